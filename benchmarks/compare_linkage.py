"""Compare linkage methods for clustering SOM prototypes: the table behind the default method.

For every configuration (method, hit weighting, map connectivity) it runs the chain clean -> customer
features -> scale -> SOM (15 x 15, batch engine defaults) -> PrototypeClustering, once with the SOM trained
on all customers ("full") and once per seed with the SOM trained on a bootstrap sample of the customers
(``SOM(init="pca")`` ignores its seed, so the sample is what varies; every run assigns all customers), and
reports:

* on generated data with planted segments (``seglib.synthetic.write_dataset``, default 3,000 customers,
  6 segments, seed 42), cut into the planted number of segments: the adjusted Rand index (ARI) of the
  customer segments with the truth, and the agreement between bootstrap runs (stability);
* on the real sample (``../shared/data/cproducts_sample.csv``), cut into 8 segments as in the original:
  the largest and the smallest segment's share of customers (balance), and the stability.

Run from the project root (prints a Markdown table; about 15 s on 2 cores)::

    .venv/bin/python benchmarks/compare_linkage.py
    .venv/bin/python benchmarks/compare_linkage.py --seeds 0 1 2 3 4 --customers 3000 --segments 6
    .venv/bin/python benchmarks/compare_linkage.py --diagnose     # + what limits the agreement
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

from seglib.clean import clean_file
from seglib.cluster import PrototypeClustering
from seglib.config import PROJECT_ROOT
from seglib.features import feature_pipeline
from seglib.som import SOM

#: (method, hit_weighting, connectivity)
METHODS = ("ward", "average", "complete", "single", "weighted", "centroid", "median")
CONFIGS = [(m, False, False) for m in METHODS]
CONFIGS += [("ward", True, False), ("average", True, False), ("centroid", True, False),
            ("ward", False, True), ("average", False, True), ("complete", False, True), ("ward", True, True)]
REAL_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "cproducts_sample.csv"


def features(path: Path) -> pd.DataFrame:
    """Scaled customer features of a transactions file, index customer_key, plus customer_id and the
    unscaled number of transactions (``n_transactions``)."""
    clean, _ = clean_file(path)
    pipe = feature_pipeline()
    X = pipe.fit_transform(clean)
    table = pipe["features"].transform(clean)
    return pd.DataFrame(X, index=table.index, columns=pipe["features"].feature_names_).assign(
        customer_id=table["customer_id"].to_numpy(), n_transactions=table["frequency"].to_numpy())


def generated(n_customers: int, n_segments: int, seed: int, tmp: Path):
    """Scaled features, planted segment and number of transactions of every generated customer."""
    from seglib.synthetic import write_dataset

    paths = [Path(p) for p in write_dataset(tmp / "transactions.csv", n_customers=n_customers,
                                            n_segments=n_segments, random_state=seed)]
    data = next(p for p in paths if not p.stem.endswith("_truth"))
    truth = pd.read_csv(next(p for p in paths if p.stem.endswith("_truth")), dtype=str)
    F = features(data)
    id_col = next(c for c in truth.columns if "customer" in c.lower())
    seg_col = next(c for c in truth.columns if "segment" in c.lower())
    y = F["customer_id"].map(truth.set_index(id_col)[seg_col])
    if y.isna().any():
        raise SystemExit(f"{int(y.isna().sum())} customers have no planted segment in the truth file")
    return F.drop(columns=["customer_id", "n_transactions"]).to_numpy(), y.to_numpy(), F["n_transactions"]


def run(X: np.ndarray, n_clusters: int, seeds, truth=None) -> pd.DataFrame:
    """Segments of every configuration: one SOM on all customers (run "full"), then one SOM per seed
    trained on a bootstrap sample of the customers (``SOM(init="pca")`` ignores its seed, so the sample
    is what varies); every run assigns all customers."""
    rows = []
    for seed in [None, *seeds]:
        sample = X if seed is None else X[np.random.default_rng(seed).integers(0, len(X), size=len(X))]
        som = SOM(progress=False, random_state=seed).fit(sample)
        bmu, hits = som.predict(X), som.hit_map(X)
        for method, weighted, connected in CONFIGS:
            pc = PrototypeClustering(method=method, n_clusters=n_clusters, hit_weighting=weighted,
                                     connectivity=connected).fit(som.weights_, hits)
            seg = pc.unit_labels_[bmu]
            share = np.bincount(seg, minlength=n_clusters + 1)[1:] / len(seg)
            rows.append({"method": method, "hit_weighting": weighted, "connectivity": connected,
                         "run": "full" if seed is None else seed, "segments": seg,
                         "ari": adjusted_rand_score(truth, seg) if truth is not None else np.nan,
                         "largest": share.max(), "smallest": share.min(), "cophenetic": pc.cophenetic_corr_})
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.Series:
    """Figures of one configuration: full-data run, and the bootstrap runs' spread and agreement."""
    full = runs[runs["run"] == "full"].iloc[0]
    boot = runs[runs["run"] != "full"]
    segs = boot["segments"].tolist()
    pairs = [adjusted_rand_score(a, b) for i, a in enumerate(segs) for b in segs[i + 1:]]
    return pd.Series({"ari": full["ari"], "boot_ari": boot["ari"].mean(), "boot_min": boot["ari"].min(),
                      "boot_max": boot["ari"].max(), "stability": np.mean(pairs) if pairs else np.nan,
                      "largest": full["largest"], "smallest": full["smallest"],
                      "cophenetic": full["cophenetic"]})


def diagnose(X: np.ndarray, y: np.ndarray, n_transactions, n_segments: int) -> None:
    """What limits the agreement: the best possible cut of the map, k-means on the customers, and the
    agreement of hit-weighted Ward among one-time and repeat buyers."""
    som = SOM(progress=False).fit(X)
    bmu, hits = som.predict(X), som.hit_map(X)
    codes = pd.factorize(y)[0]
    majority = np.array([np.bincount(codes[bmu == u]).argmax() if (bmu == u).any() else 0
                         for u in range(hits.size)])
    seg = PrototypeClustering(n_clusters=n_segments).fit(som.weights_, hits).unit_labels_[bmu]
    one = np.asarray(n_transactions) <= 1
    km = KMeans(n_segments, n_init=10, random_state=0).fit_predict(X)
    print(f"\nceiling (each unit -> majority planted segment of its customers): "
          f"ARI {adjusted_rand_score(y, majority[bmu]):.3f}")
    print(f"k-means (k = {n_segments}, 10 inits) on the customers: ARI {adjusted_rand_score(y, km):.3f}")
    print(f"hit-weighted Ward: ARI {adjusted_rand_score(y, seg):.3f}; repeat buyers ({(~one).mean():.0%}) "
          f"{adjusted_rand_score(y[~one], seg[~one]):.3f}, one-time buyers ({one.mean():.0%}) "
          f"{adjusted_rand_score(y[one], seg[one]):.3f}")
    print(pd.crosstab(pd.Series(y, name="planted"), pd.Series(seg, name="segment")).to_string())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="SOM seeds")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--data-seed", type=int, default=42)
    parser.add_argument("--real-k", type=int, default=8, help="segments on the real sample")
    parser.add_argument("--sample", type=Path, default=REAL_SAMPLE)
    parser.add_argument("--diagnose", action="store_true", help="also print what limits the agreement")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    keys = ["method", "hit_weighting", "connectivity"]
    with tempfile.TemporaryDirectory() as tmp:
        X, y, n_transactions = generated(args.customers, args.segments, args.data_seed, Path(tmp))
    gen = run(X, args.segments, args.seeds, y)
    table = gen.groupby(keys, sort=False).apply(summarise, include_groups=False)
    if args.sample.is_file():
        real_X = features(args.sample).drop(columns=["customer_id", "n_transactions"]).to_numpy()
        real = run(real_X, args.real_k, args.seeds)
        real = real.groupby(keys, sort=False).apply(summarise, include_groups=False)
        table = table.join(real[["largest", "smallest", "stability"]], rsuffix="_real")
    print(f"Generated: {args.customers} customers, {args.segments} planted segments, data seed "
          f"{args.data_seed}, {X.shape[1]} features, cut into k = {args.segments}. Real sample: "
          f"{args.sample.name}, k = {args.real_k}. SOM 15 x 15, batch, PCA init. 'full': one SOM on all "
          f"customers; 'bootstrap': one SOM per seed {args.seeds} on a bootstrap sample, all customers "
          f"assigned; stability = mean pairwise ARI between the bootstrap runs.\n")
    print("| method | hit weighting | connectivity | ARI (full) | ARI bootstrap mean (min-max) "
          "| stability (gen.) | largest share (gen.) | real: largest | real: smallest | stability (real) "
          "| cophenetic |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (method, weighted, connected), r in table.iterrows():
        real = (f"{r['largest_real']:.0%} | {r['smallest_real']:.1%} | {r['stability_real']:.2f}"
                if "largest_real" in r else "- | - | -")
        print(f"| {method} | {'yes' if weighted else 'no'} | {'yes' if connected else 'no'} | {r['ari']:.3f} "
              f"| {r['boot_ari']:.3f} ({r['boot_min']:.3f}-{r['boot_max']:.3f}) | {r['stability']:.2f} "
              f"| {r['largest']:.0%} | {real} | {r['cophenetic']:.2f} |")
    if args.diagnose:
        diagnose(X, y, n_transactions, args.segments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
