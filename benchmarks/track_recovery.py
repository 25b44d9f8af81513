"""How well ``seglib track`` recovers the planted migration of the synthetic data.

For each data seed it writes a log with planted moves between archetypes
(``write_dataset(..., periods=P, migration=RATE)``), trains a segmentation on the first quarters and
tracks the rest (``seglib.track.track_segments``), then prints, for every pair of consecutive tracked
quarters, the share of customers active in both whose segment changed: planted (the truth file) and
found, and their difference. ``tests/test_track.py`` checks the difference (within 0.05) on one seed.

Run from the project root (a few seconds per seed on 2 cores)::

    .venv/bin/python benchmarks/track_recovery.py
    .venv/bin/python benchmarks/track_recovery.py --seeds 1 2 3 --customers 3000 --migration 0.2
    .venv/bin/python benchmarks/track_recovery.py --train-periods 1 --window 1 --periods 4
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import pandas as pd

from seglib.synthetic import write_dataset
from seglib.track import track_segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--periods", type=int, default=5)
    parser.add_argument("--migration", type=float, default=0.1)
    parser.add_argument("--train-periods", type=int, default=2)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--map", type=int, nargs=2, default=[8, 8])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            data, truth_path = write_dataset(Path(tmp) / f"tx-{seed}.csv", args.customers, args.segments,
                                             seed, periods=args.periods, migration=args.migration)
            tracking = track_segments(data, train_periods=args.train_periods, window=args.window,
                                      map_shape=args.map, n_clusters=args.segments, seed=0)
            wide = pd.read_csv(truth_path, dtype=str).pivot(index="customerID", columns="period",
                                                            values="segment")
            for r in tracking.changed().itertuples():
                both = wide[[r.period_from, r.period_to]].dropna()
                planted = float((both[r.period_from] != both[r.period_to]).mean())
                rows.append({"seed": seed, "pair": f"{r.period_from}->{r.period_to}",
                             "customers": r.customers, "planted": planted, "found": r.changed_share,
                             "difference": r.changed_share - planted})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nlargest |found - planted|: {table['difference'].abs().max():.3f}; "
          f"mean difference {table['difference'].mean():+.3f}")


if __name__ == "__main__":
    main()
