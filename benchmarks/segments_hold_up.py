"""Do the default segments hold up? Planted recovery and reproducibility against k-means.

The two claims of issue 13 (``docs/clustering.md``, "Consolidation and the number of segments"):

1. **Planted recovery.** On generated data sets (``seglib.synthetic.write_dataset``; 2,000-20,000
   customers, K = 4..8 planted segments, data seeds 1000+ that the tests do not use) the default chain
   (``steps.clean_step`` -> ``steps.som_step`` -> ``steps.cluster_step``) told K is compared, by the
   adjusted Rand index (ARI) with the truth, with ``KMeans(K, n_init=10)`` on the same scaled features.
   Columns: ``cut`` the plain ward cut (``consolidate=False``), ``unit`` the cut consolidated unit by
   unit (``assign="unit"``, the previous default), ``default`` consolidated unit by unit then customer
   by customer (``assign="customer"``, the default), ``kmeans``, and ``auto`` the k that
   ``n_clusters="auto"`` chooses. Also the default's within-segment sum of squares (k-means' objective)
   against ``KMeans``'s ``inertia_``.
2. **Reproducibility.** On the shared real sample and on one generated data set, four runs (seeds 1-4)
   on different 80% samples of the customers, each with its own features, scaling and map, cut into k
   segments (6 on the real sample; the planted K on generated data); the mean pairwise ARI on the
   customers two runs share, for the default, whole units, the plain cut and k-means on each run's scaled
   features.

Run from the project root (about 6 minutes on 2 shared cores; prints Markdown tables)::

    .venv/bin/python benchmarks/segments_hold_up.py
    .venv/bin/python benchmarks/segments_hold_up.py --quick        # 5 data sets, for development
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from seglib import steps
from seglib.config import PROJECT_ROOT
from seglib.synthetic import write_dataset

REAL_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "cproducts_sample.csv"
SIZES = (2000, 3000, 5000, 8000, 12000, 20000)
#: (data seed, planted K, customers): 25 data sets, every K 5 times, sizes cycling 2k..20k
DATASETS = [(1000 + i, 4 + i % 5, SIZES[i % len(SIZES)]) for i in range(25)]


def truth_of(truth_csv: Path, ids) -> np.ndarray:
    truth = pd.read_csv(truth_csv, dtype=str).set_index("customerID")["segment"]
    return truth.reindex(np.asarray(ids)).to_numpy()


def recovery(seed: int, k: int, n: int, tmp: Path) -> dict:
    data, truth_csv = write_dataset(tmp / f"d{seed}.csv", n_customers=n, n_segments=k, random_state=seed)
    out = tmp / f"r{seed}"
    clean = steps.clean_step(data, out_dir=out)
    s = steps.som_step(clean.clean, out_dir=out, progress=False)
    truth = truth_of(truth_csv, s.customers["customer_id"])
    X = s.X.to_numpy()
    row = {"seed": seed, "K": k, "customers": len(X)}
    for name, options in (("cut", {"consolidate": False}), ("unit", {"assign": "unit"}), ("default", {})):
        told = steps.cluster_step(s, n_clusters=k, n_stability_runs=0, out_dir=out, **options)
        row[name] = adjusted_rand_score(truth, told.segments["segment"])
    km = KMeans(k, n_init=10, random_state=0).fit(X)
    row["kmeans"] = adjusted_rand_score(truth, km.labels_)
    row["sse_ratio"] = within_ss(X, told.segments["segment"].to_numpy()) / km.inertia_  # the default's
    t0 = time.perf_counter()
    auto = steps.cluster_step(s, out_dir=out)
    row["auto_seconds"] = time.perf_counter() - t0
    row["auto"] = auto.clustering.n_clusters_
    return row


def within_ss(X: np.ndarray, labels: np.ndarray) -> float:
    """The customers' within-segment sum of squares (k-means' objective, scikit-learn's ``inertia_``)."""
    return float(sum(((X[labels == s] - X[labels == s].mean(axis=0)) ** 2).sum() for s in np.unique(labels)))


def reproducibility(path: Path, k: int, tmp: Path, seeds=(1, 2, 3, 4), frac: float = 0.8) -> dict:
    clean = steps.clean_step(path, out_dir=tmp / "full").clean
    keys = np.sort(clean["customer_key"].unique())
    labels = {"default": {}, "unit": {}, "cut": {}, "kmeans": {}}
    for seed in seeds:
        chosen = np.random.default_rng(seed).choice(keys, size=int(frac * len(keys)), replace=False)
        part = clean[clean["customer_key"].isin(chosen)].copy()
        part.attrs = dict(clean.attrs)
        out = tmp / f"s{seed}"
        s = steps.som_step(part, seed=seed, out_dir=out, progress=False)
        ids = s.customers["customer_id"].to_numpy()
        X = s.X.to_numpy()
        for name, options in (("default", {}), ("unit", {"assign": "unit"}), ("cut", {"consolidate": False})):
            seg = steps.cluster_step(s, n_clusters=k, seed=seed, n_stability_runs=0, out_dir=out,
                                     **options).segments["segment"].to_numpy()
            labels[name][seed] = pd.Series(seg, index=ids)
        labels["kmeans"][seed] = pd.Series(KMeans(k, n_init=10, random_state=seed).fit_predict(X), index=ids)
    row = {"n": len(keys)}
    for name, runs in labels.items():
        aris = []
        for a, b in itertools.combinations(seeds, 2):
            shared = runs[a].index.intersection(runs[b].index)
            aris.append(adjusted_rand_score(runs[a][shared], runs[b][shared]))
        row[name] = float(np.mean(aris))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 data sets and no 20k customers")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", FutureWarning)
    logging.disable(logging.WARNING)
    datasets = [d for d in DATASETS if d[2] <= 5000][:5] if args.quick else DATASETS
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = [recovery(seed, k, n, tmp) for seed, k, n in datasets]
        table = pd.DataFrame(rows)
        print(f"Planted recovery (ARI with the truth), {len(table)} generated data sets, told K\n")
        print("| seed | K | customers | plain cut | whole units | default (per customer) | k-means "
              "| auto k |")
        print("|---|---|---|---|---|---|---|---|")
        for r in table.itertuples():
            print(f"| {r.seed} | {r.K} | {r.customers:,} | {r.cut:.3f} | {r.unit:.3f} | {r.default:.3f} "
                  f"| {r.kmeans:.3f} | {r.auto} |")
        med = table[["cut", "unit", "default", "kmeans"]].median()
        low = table[["cut", "unit", "default", "kmeans"]].min()
        for label, v in (("median", med), ("min", low)):
            print(f"| **{label}** | | | {v.cut:.3f} | {v.unit:.3f} | {v.default:.3f} | {v.kmeans:.3f} | |")
        found = (table["auto"] == table["K"]).sum()
        print(f"\nn_clusters='auto' finds K on {found} of {len(table)} data sets "
              f"(by K: {table.assign(ok=table['auto'] == table['K']).groupby('K')['ok'].sum().to_dict()}); "
              f"auto cluster step {table['auto_seconds'].median():.2f} s median.")
        print(f"Default median - k-means median: {med.default - med.kmeans:+.4f} ({med.default:.5f} vs "
              f"{med.kmeans:.5f}); data sets below 0.85: {(table['default'] < 0.85).sum()}.")
        diff = table["default"] - table["kmeans"]
        print(f"Per data set, default - k-means: higher by >= 0.0005 on {(diff >= 5e-4).sum()}, "
              f"within 0.0005 on {(diff.abs() < 5e-4).sum()}, lower by >= 0.0005 on {(diff <= -5e-4).sum()} "
              f"(largest loss {diff.min():+.4f}); the default's within-segment sum of squares <= k-means' "
              f"(relative 1e-6) on {(table['sse_ratio'] <= 1 + 1e-6).sum()} of {len(table)} (largest ratio "
              f"{table['sse_ratio'].max():.6f}).\n")

        print("Reproducibility: mean pairwise ARI of 4 runs on different 80% customer samples (seeds 1-4)\n")
        print("| data | customers | k | plain cut | whole units | default (per customer) | k-means "
              "| default - k-means |")
        print("|---|---|---|---|---|---|---|---|")
        cases = []
        if REAL_SAMPLE.is_file():
            cases.append(("real sample", REAL_SAMPLE, 6))
        else:
            print(f"(real sample {REAL_SAMPLE} not found: skipped)")
        data, _ = write_dataset(tmp / "repro.csv", n_customers=5000, n_segments=6, random_state=2000)
        cases.append(("generated, K = 6", data, 6))
        for name, path, k in cases:
            r = reproducibility(path, k, tmp / name.replace(" ", "_").replace(",", "").replace("=", ""))
            print(f"| {name} | {r['n']:,} | {k} | {r['cut']:.3f} | {r['unit']:.3f} | {r['default']:.3f} "
                  f"| {r['kmeans']:.3f} | {r['default'] - r['kmeans']:+.3f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
