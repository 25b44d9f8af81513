"""How well the default pipeline recovers the planted segments of the synthetic data.

For each data seed it writes the generated data set (``seglib.synthetic.write_dataset``, 3,000 customers
by default), runs the chain the notebooks run (``steps.clean_step`` -> ``steps.som_step`` -> 15 x 15
batch SOM -> ``steps.cluster_step`` with K clusters) and prints the adjusted Rand index (ARI) of the
customer segments against the truth for

* ``ward``: the default method (hit-weighted ward on the prototypes);
* ``average``: the original analysis's linkage;
* ``kmeans``: ``KMeans(K, n_init=10)`` directly on the scaled customer matrix ``s.X`` (no SOM);
* ``ward, one-time buyers``: the default method's ARI among the customers with a single transaction
  (they show the least behaviour), and their share;
* ``lines``: KMeans on the *line items* (age, log price, promo flag), each line labelled with its
  customer's segment: the unit of the original script, which should do much worse;

then the crosstab of the default method against the truth on the first seed.

Run from the project root (about 2 s per seed and K on 2 cores)::

    .venv/bin/python benchmarks/recovery.py
    .venv/bin/python benchmarks/recovery.py --seeds 42 1 2 3 4 --segments 8
    .venv/bin/python benchmarks/recovery.py --segments 4 --customers 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from seglib import steps
from seglib.synthetic import write_dataset

AS_OF = pd.Timestamp("2017-07-01")  # the day after the generated log's last day


def line_ari(raw_csv: Path, truth: pd.Series, k: int) -> float:
    """ARI of KMeans on line items (age, log price, promo flag), as in tests/test_synthetic.py."""
    tx = pd.read_csv(raw_csv, dtype=str, keep_default_na=False)
    age = (AS_OF - pd.to_datetime(tx.DOB, errors="coerce")).dt.days / 365.25
    age = age.where((age >= 15) & (age < 100))
    lines = np.column_stack([
        age.fillna(age.median()),
        np.log1p(pd.to_numeric(tx.sale_price_after_promo).clip(lower=0)),
        tx.promo_code.ne("NONPROMO"),
    ])  # fmt: skip
    scaled = StandardScaler().fit_transform(lines)
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(scaled)
    return adjusted_rand_score(truth.loc[tx.customerID].to_numpy(), labels)


def run(seed: int, k: int, n_customers: int, tmp: Path) -> tuple[dict, pd.DataFrame]:
    """ARI figures of one data seed and the crosstab of the default method."""
    paths = write_dataset(tmp / f"t{seed}.csv", n_customers=n_customers, n_segments=k, random_state=seed)
    run_dir = tmp / f"run{seed}"
    c = steps.clean_step(paths[0], out_dir=run_dir)
    s = steps.som_step(c.clean, out_dir=run_dir, progress=False)
    truth = pd.read_csv(paths[1], dtype=str).set_index("customerID")["segment"]
    ids = s.customers["customer_id"].to_numpy()
    row, crosstab = {}, None
    for method in ("ward", "average"):
        seg = steps.cluster_step(s, method=method, n_clusters=k, out_dir=run_dir).segments
        t = truth.reindex(seg["customer_id"].to_numpy())
        row[method] = adjusted_rand_score(t, seg["segment"])
        if crosstab is None:
            once = s.customers["frequency"].eq(1).to_numpy()
            row["ward_once"] = adjusted_rand_score(t[once], seg["segment"][once])
            row["once"] = once.mean()
            crosstab = pd.crosstab(t.rename("truth").to_numpy(), seg["segment"].rename("segment").to_numpy(),
                                   rownames=["truth"], colnames=["segment"])
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(s.X.to_numpy())
    row["kmeans"] = adjusted_rand_score(truth.reindex(ids), labels)
    row["lines"] = line_ari(paths[0], truth, k)
    return row, crosstab


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--seeds", type=int, nargs="+", default=[42, 1, 2], help="data seeds (default: 42 1 2)")
    add("--segments", type=int, default=6, help="planted segments K = clusters cut (default: 6)")
    add("--customers", type=int, default=3000, help="customers per data set (default: 3000)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", FutureWarning)
    rows, first = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows[seed], crosstab = run(seed, args.segments, args.customers, Path(tmp))
            first = crosstab if first is None else first
    table = pd.DataFrame(rows).T.rename_axis("seed")
    print(f"ARI with the truth, K={args.segments}, {args.customers} customers\n")
    print("| seed | ward (default) | average | KMeans on s.X | line items | ward, one-time buyers (share) |")
    print("|---|---|---|---|---|---|")
    for seed, r in table.iterrows():
        print(f"| {seed} | {r.ward:.3f} | {r.average:.3f} | {r.kmeans:.3f} | {r.lines:.3f} "
              f"| {r.ward_once:.3f} ({r.once:.0%}) |")
    m = table.mean()
    print(f"| mean | {m.ward:.3f} | {m.average:.3f} | {m.kmeans:.3f} | {m.lines:.3f} | {m.ward_once:.3f} |")
    print(f"\nCrosstab of the default method (ward), seed {args.seeds[0]}:\n")
    print(first.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
