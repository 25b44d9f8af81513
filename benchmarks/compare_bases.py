"""Bases and descriptors: segments formed by behaviour only against segments formed by every feature.

For each data set it runs the chain the notebooks run (``steps.clean_step`` -> ``steps.som_step`` with
``bases="behaviour"`` (the default) or ``bases="all"`` (every feature, what seglib did before) ->
``steps.cluster_step`` -> ``steps.profile_step``) and prints, per run:

* ``ARI``: adjusted Rand index of the customer segments with the planted truth (generated data only);
* ``gender gap``: the largest ``|female share in a segment - female share overall|`` over the segments
  (shares of the customers with a known gender); a segment that is a gender split has a gap near the
  share of men or of women (e.g. 0.7), one that is not has a few points;
* ``gender-named``: segments whose name or description mentions a gender (the issue's "Female" segment);
* ``age gap``: the largest ``|mean age in a segment - overall mean age|``, in years;
* ``stable``: segments whose mean Jaccard over resamples (the stability of the kept segments) is at
  least 0.75, and the mean Jaccard over the segments.

Data: the default data set (``data/raw/transactions.csv`` with its truth, ``make data``), further
generated data seeds, and the real 2,000-row sample when present (``../shared/data/cproducts_sample.csv``,
no truth). Run from the project root (about 15 s per data set on 2 cores)::

    .venv/bin/python benchmarks/compare_bases.py
    .venv/bin/python benchmarks/compare_bases.py --seeds 1 2 --clusters 8 6
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
from seglib.clean import customer_key
from seglib.config import DEFAULT_DATA, PROJECT_ROOT
from seglib.synthetic import write_dataset

REAL = PROJECT_ROOT.parent / "shared" / "data" / "cproducts_sample.csv"
GENDER_WORDS = ("female", "male")


def measure(data: Path, truth: pd.Series | None, bases: str, k: int, out: Path) -> dict:
    """One run of steps 01-04 with ``bases`` and ``k`` segments; the figures of the module docstring."""
    clean = steps.clean_step(data, out_dir=out)
    som = steps.som_step(clean.clean, bases=bases, out_dir=out, progress=False)
    clusters = steps.cluster_step(som, n_clusters=k, out_dir=out)
    profile = steps.profile_step(clusters, out_dir=out).profile
    customers, seg = som.customers, clusters.segments["segment"]
    known = (customers["gender_unknown"] < 0.5) if "gender_unknown" in customers else \
        pd.Series(True, index=customers.index)
    female = customers.loc[known, "gender_female"]
    by_seg = female.groupby(seg[known]).mean()
    age = customers["age"]
    age_gap = (age.groupby(seg).mean() - age.mean()).abs()
    text = (profile["name"] + " " + profile["description"]).str.lower()
    named = [s for s, t in text.items() if any(w in t.replace(",", " ").split() for w in GENDER_WORDS)]
    table = clusters.stability_table()
    row = {
        "bases": bases, "k": k, "features": len(som.feature_names),
        "gender gap": float((by_seg - female.mean()).abs().max()),
        "gap segment share": float((seg == (by_seg - female.mean()).abs().idxmax()).mean()),
        "gender-named": len(named), "age gap": float(age_gap.max()),
        "stable": int((table["verdict"] == "stable").sum()),
        "mean Jaccard": float(table["mean_jaccard"].mean()),
    }
    if truth is not None:
        ids = customers["customer_id"].map(lambda v: str(v))
        row["ARI"] = float(adjusted_rand_score(truth.reindex(customer_key(ids)).to_numpy(), seg.to_numpy()))
    return row


def truth_of(path: Path) -> pd.Series:
    t = pd.read_csv(path, dtype=str)
    return pd.Series(t["segment"].to_numpy(), index=customer_key(t["customerID"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="further generated data seeds")
    parser.add_argument("--clusters", type=int, nargs="+", default=[8, 6], help="numbers of segments")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    sets = []
    if not DEFAULT_DATA.is_file():
        steps.default_data()
    sets.append(("default data", DEFAULT_DATA, truth_of(DEFAULT_DATA.with_name("transactions_truth.csv"))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in args.seeds:
            path, truth_path = write_dataset(tmp / f"seed{seed}.csv", n_customers=3000, random_state=seed)
            sets.append((f"generated, seed {seed}", path, truth_of(truth_path)))
        if REAL.is_file():
            sets.append(("real sample", REAL, None))
        for name, path, truth in sets:
            for k in args.clusters:
                for bases in ("all", "behaviour"):
                    row = measure(path, truth, bases, k, tmp / f"{name}-{k}-{bases}".replace(" ", "_"))
                    rows.append({"data": name, **row})
                    print(rows[-1], file=sys.stderr)
    table = pd.DataFrame(rows)
    cols = ["data", "k", "bases", "features", "ARI", "gender gap", "gap segment share", "gender-named",
            "age gap", "stable", "mean Jaccard"]
    table = table.reindex(columns=cols)
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for _, r in table.iterrows():
        cells = ["" if isinstance(v, float) and np.isnan(v) else f"{v:.3f}" if isinstance(v, float)
                 else str(v) for v in r]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
