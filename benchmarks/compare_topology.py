"""Rectangular against hexagonal maps (issue 19): should ``topology="hexagonal"`` be the default?

1. Generated data (``seglib.synthetic.write_dataset``): for each data seed and number of planted segments
   K, the chain the notebooks run (``steps.clean_step`` -> ``steps.som_step`` -> ``steps.cluster_step``
   with K clusters, hit-weighted Ward, default map 15 x 15) once per topology; prints the adjusted Rand
   index (ARI) of the customer segments against the planted truth, with and without ``connectivity``.
2. The shared real sample (``../shared/data/cproducts_sample.csv``, when present): quantization error,
   topographic error (8 neighbours on the square map, 6 on the hexagonal one, and 4 = edge-sharing
   squares for reference), empty units, and segment stability (mean ARI of 5 bootstrap runs, 8 segments).

Run from the project root (about a minute on 2 busy cores with the defaults)::

    .venv/bin/python benchmarks/compare_topology.py
    .venv/bin/python benchmarks/compare_topology.py --seeds 42 1 2 3 4 --segments 4 6 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from seglib import steps
from seglib.cluster import PrototypeClustering, segment_stability, som_reclusterer
from seglib.synthetic import write_dataset

TOPOLOGIES = ("rectangular", "hexagonal")
REAL_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cproducts_sample.csv"


def generated(seed: int, k: int, n_customers: int, tmp: Path) -> dict:
    """ARI with the truth of each topology (plain and with connectivity) on one generated data set."""
    data, truth_path = write_dataset(tmp / f"t{seed}-{k}.csv", n_customers=n_customers, n_segments=k,
                                     random_state=seed)[:2]
    truth = pd.read_csv(truth_path, dtype=str).set_index("customerID")["segment"]
    run = tmp / f"run{seed}-{k}"
    clean = steps.clean_step(data, out_dir=run)
    row = {}
    for topology in TOPOLOGIES:
        som = steps.som_step(clean.clean, topology=topology, out_dir=run, progress=False)
        for connectivity in (False, True):
            seg = steps.cluster_step(som, n_clusters=k, connectivity=connectivity, out_dir=run).segments
            t = truth.reindex(seg["customer_id"].to_numpy())
            row[(topology, connectivity)] = adjusted_rand_score(t, seg["segment"])
    return row


def real(path: Path, tmp: Path, runs: int) -> pd.DataFrame:
    """Quality and stability figures of both topologies on the real sample."""
    clean = steps.clean_step(path, out_dir=tmp / "real")
    table = {}
    for topology in TOPOLOGIES:
        s = steps.som_step(clean.clean, topology=topology, out_dir=tmp / "real", progress=False)
        X = s.X.to_numpy()
        som = s.som
        clustering = PrototypeClustering(n_clusters=8, topology=topology).fit(som.weights_, som.hit_map(X))
        kept = clustering.unit_labels_[som.predict(X)]
        stability = segment_stability(kept, som_reclusterer(X, som, clustering), n_runs=runs, progress=False)
        table[topology] = {
            "quantization error": som.quantization_error(X),
            "topographic error (default neighbours)": som.topographic_error(X),
            "topographic error (edge-sharing cells)": som.topographic_error(
                X, neighbors=4 if topology == "rectangular" else 6),
            "units without customers": som.empty_unit_share(X),
            "explained variance": som.explained_variance(X),
            f"stability: mean ARI with the kept segments over {runs} resamples, k=8": stability.mean_ari,
        }
    return pd.DataFrame(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--seeds", type=int, nargs="+", default=[42, 1, 2, 3], help="data seeds (default: 42 1 2 3)")
    add("--segments", type=int, nargs="+", default=[4, 6, 8], help="planted segments K (default: 4 6 8)")
    add("--customers", type=int, default=3000, help="customers per data set (default: 3000)")
    add("--stability-runs", type=int, default=5, help="bootstrap runs on the real sample (default: 5)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", FutureWarning)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.segments:
            for seed in args.seeds:
                rows[(k, seed)] = generated(seed, k, args.customers, Path(tmp))
        table = pd.DataFrame(rows).T
        print(f"ARI with the planted segments ({args.customers} customers, 15 x 15 map, ward, "
              "n_clusters = K)\n")
        print("| K | seed | rectangular | hexagonal | difference | rectangular, connectivity "
              "| hexagonal, connectivity | difference |")
        print("|---|---|---|---|---|---|---|---|")
        for (k, seed), r in table.iterrows():
            a, b = r[("rectangular", False)], r[("hexagonal", False)]
            c, d = r[("rectangular", True)], r[("hexagonal", True)]
            print(f"| {k} | {seed} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {c:.3f} | {d:.3f} | {d - c:+.3f} |")
        m = table.mean()
        a, b = m[("rectangular", False)], m[("hexagonal", False)]
        c, d = m[("rectangular", True)], m[("hexagonal", True)]
        print(f"| mean | | {a:.3f} | {b:.3f} | {b - a:+.3f} | {c:.3f} | {d:.3f} | {d - c:+.3f} |")
        diff = table[("hexagonal", False)] - table[("rectangular", False)]
        print(f"\nhexagonal - rectangular (no connectivity): min {diff.min():+.3f}, max {diff.max():+.3f}, "
              f"hexagonal better in {(diff > 0).sum()} of {len(diff)}")
        if REAL_SAMPLE.is_file():
            print(f"\nReal sample ({REAL_SAMPLE.name}), 15 x 15 map, defaults:\n")
            quality = real(REAL_SAMPLE, Path(tmp), args.stability_runs)
            print("| figure | rectangular | hexagonal |")
            print("|---|---|---|")
            for name, r in quality.iterrows():
                print(f"| {name} | {r.rectangular:.4f} | {r.hexagonal:.4f} |")
        else:
            print(f"\n(real sample not found at {REAL_SAMPLE}: skipped)")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
