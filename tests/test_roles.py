"""Any transaction log: every optional role may be absent, everywhere (issue 14).

The whole pipeline (the four notebooks through ``seglib run``, the report, the model and scoring)
runs on small generated logs with no optional role, each optional role alone, and all roles; a log
with quantity and unit price but no amount gets its amount derived. Then: no NaN or infinity ever
reaches ``result.csv``, ``segments.csv`` or the model, whatever the values (hypothesis).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seglib import pipeline
from seglib.load import DEFAULT_COLUMNS, REQUIRED_ROLES, ROLES
from seglib.profile import read_result
from seglib.segmentation import Segmentation
from seglib.synthetic import make_transactions

OPTIONAL = [r for r in ROLES if r not in REQUIRED_ROLES]
#: Column names unlike the original schema, so every role goes through ``columns:``.
NAMES = {role: f"col_{role}" for role in ROLES}
#: Tiny and fast: a small map, few epochs, no stability runs.
FAST = {"map_shape": [5, 5], "n_epochs": 3, "n_clusters": 4}
#: ... and the notebooks' figures of k-selection and stability kept small.
FAST_NOTEBOOKS = {**FAST, "k_max": 5, "n_stability_runs": 2}


def log_with_roles(path: Path, roles, *, n_customers: int = 150, seed: int = 5, amount: bool = True) -> dict:
    """Write a generated log with only the required roles and ``roles``; returns its ``columns`` mapping."""
    tx, _ = make_transactions(n_customers, 4, random_state=seed)
    rng = np.random.default_rng(seed)
    quantity = rng.integers(1, 4, len(tx))
    price = pd.to_numeric(tx[DEFAULT_COLUMNS["amount"]], errors="coerce").to_numpy() / quantity
    extra = {"quantity": quantity.astype(str),
             "unit_price": [f"{p:.4f}" if np.isfinite(p) else "" for p in price]}
    keep = [r for r in ROLES if r in REQUIRED_ROLES or r in roles]
    if not amount:
        keep.remove("amount")
    out = pd.DataFrame({NAMES[r]: extra[r] if r in extra else tx[DEFAULT_COLUMNS[r]].to_numpy()
                        for r in keep})
    out.to_csv(path, index=False)
    return {r: NAMES[r] for r in keep}


def finite_table(path: Path) -> pd.DataFrame:
    """A written CSV whose numeric cells are all finite (empty cells are allowed: unknown, not NaN)."""
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    for col in table.columns:
        values = table[col][table[col] != ""]
        nums = pd.to_numeric(values, errors="coerce")
        if nums.notna().all() and len(values):
            assert np.isfinite(nums.to_numpy(dtype=float)).all(), (path.name, col)
        assert not values.str.lower().isin(["nan", "inf", "-inf", "infinity"]).any(), (path.name, col)
    return table


def model_is_finite(model_dir: Path) -> None:
    for npz in model_dir.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as data:
            for name in data.files:
                if np.issubdtype(data[name].dtype, np.number):
                    assert np.isfinite(data[name]).all(), (npz.name, name)
    for js in model_dir.rglob("*.json"):
        text = js.read_text()
        assert "NaN" not in text and "Infinity" not in text, js.name


CASES = [("no optional role", ()), *[(f"only {r}", (r,)) for r in OPTIONAL], ("all roles", tuple(OPTIONAL))]


def run_notebooks_here(data: Path, run: Path, parameters: dict) -> Path:
    """Execute the four notebooks' code cells in this process, as papermill would (parameters injected
    after each notebook's parameters cell), without a kernel: the same code on any log in a second.

    ``seglib run`` (papermill, one kernel per notebook) takes about 40 s per log on a shared machine;
    it runs below for the extreme cases, this for every subset of roles.
    """
    import matplotlib.pyplot as plt
    import nbformat

    run.mkdir(parents=True)
    for name in pipeline.NOTEBOOKS:
        nb = nbformat.read(pipeline.NOTEBOOK_DIR / name, as_version=4)
        declared = pipeline.declared_parameters()[name]
        given = {"out_dir": str(run), **({"data_path": str(data)} if "data_path" in declared else {})}
        given |= {k: v for k, v in parameters.items() if k in declared}
        namespace: dict = {}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            exec(compile(cell.source, f"{name}", "exec"), namespace)  # noqa: S102 - our own notebooks
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(given)
        plt.close("all")
    return run


@pytest.mark.slow
@pytest.mark.parametrize("roles", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_every_notebook_runs_with_any_subset_of_optional_roles(tmp_path, roles):
    data = tmp_path / "log.csv"
    columns = log_with_roles(data, roles)
    run = run_notebooks_here(data, tmp_path / "run", {**FAST_NOTEBOOKS, "columns": columns})
    check_run(run, data, roles)


@pytest.mark.slow
@pytest.mark.parametrize("roles", [(), tuple(OPTIONAL)], ids=["no optional role", "all roles"])
def test_seglib_run_with_no_optional_role_and_with_all(tmp_path, reports, roles):
    data = tmp_path / "log.csv"
    columns = log_with_roles(data, roles)
    result = pipeline.run(data=data, out=tmp_path / "run", parameters={**FAST_NOTEBOOKS, "columns": columns},
                          progress=False)
    run = result.run_dir
    check_run(run, data, roles)
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "Traceback" not in html


def check_run(run: Path, data: Path, roles) -> None:
    """Every output of a run is there and finite; names are distinct; the model scores the log."""
    for name in ("result.csv", "segments.csv", "cleaning_report.json", "summary.html"):
        assert (run / name).is_file(), name
    summary = (run / "summary.html").read_text(encoding="utf-8")
    assert "Traceback" not in summary and "nan" not in summary.lower().split("<body")[-1].split()
    segments = finite_table(run / "segments.csv")
    finite_table(run / "result.csv")
    names = segments["name"].tolist()
    assert len(set(names)) == len(names)
    model_is_finite(run / "model")
    scored = Segmentation.load(run).predict(data)  # the file, read with the saved mapping
    assert set(scored["segment"]) <= set(range(1, len(segments) + 1))
    assert len(list((run / "figures").glob("*.png"))) >= 10


def _raw(path, columns):
    from seglib.load import load_transactions

    return load_transactions(path, columns)


def test_a_log_with_quantity_and_unit_price_but_no_amount_runs_end_to_end(tmp_path):
    data = tmp_path / "log.csv"
    columns = log_with_roles(data, ("quantity", "unit_price"), amount=False)
    result = pipeline.segment(data, tmp_path / "run", {**FAST, "columns": columns}, progress=False)
    run = result.run_dir
    report = json.loads((run / "cleaning_report.json").read_text())
    assert report["derived"] == {"amount": "quantity * unit_price"}
    assert report["rows_read"] == report["rows_kept"] + sum(report["rows_dropped"].values())
    table = finite_table(run / "result.csv")
    assert "items_per_transaction" in table.columns
    scored = Segmentation.load(run).predict(_raw(data, columns))
    assert len(scored) == len(table)
    assert math.isfinite(float(pd.to_numeric(table["monetary"]).sum()))


def test_read_result_of_a_minimal_log(tmp_path):
    data = tmp_path / "log.csv"
    columns = log_with_roles(data, ())
    result = pipeline.segment(data, tmp_path / "run", {**FAST, "columns": columns}, progress=False)
    table = read_result(result.run_dir / "result.csv", id_column=columns["customer_id"])
    assert table[columns["customer_id"]].notna().all()


# ---------------------------------------------------------------------------------- fuzzed values
from datetime import date  # noqa: E402

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Columns that may be empty in the outputs: an unknown age is unknown, not a number.
MAY_BE_EMPTY = ("age",)
AMOUNTS = st.one_of(
    st.sampled_from(["1e308", "-1e308", "inf", "-inf", "nan", "1e-320", "0", "-0", "1e15", "-9e14", "",
                     "abc"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
DATES = st.one_of(
    st.sampled_from(["1900-01-01", "1970-01-01", "2099-12-31", "1677-09-22", "2262-04-11", "0001-01-01", "",
                     "today"]),
    st.dates(min_value=date(1600, 1, 1), max_value=date(2300, 1, 1)).map(date.isoformat),
)
EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.one_of(st.tuples(st.just("amount"), AMOUNTS),
                                                             st.tuples(st.just("date"), DATES),
                                                             st.tuples(st.just("dob"), DATES))),
                 min_size=1, max_size=12)


@pytest.fixture(scope="module")
def base_log():
    tx, _ = make_transactions(120, 4, random_state=11)
    return tx


def check_finite_outputs(run: Path) -> None:
    result = finite_table(run / "result.csv")
    for col in result.columns:
        if col not in MAY_BE_EMPTY:
            assert (result[col] != "").all(), ("result.csv", col)
    segments = finite_table(run / "segments.csv")
    for col in segments.columns:
        stat = col.rsplit("_", 1)[-1]
        if stat in ("median", "mean") and not col.startswith(MAY_BE_EMPTY):
            assert (segments[col] != "").all(), ("segments.csv", col)
    for col in ("customers", "customer_share", "revenue_share", "name", "description"):
        assert (segments[col] != "").all(), ("segments.csv", col)
    keys = [frozenset(n.lower().split(", ")) for n in segments["name"]]
    assert len(set(keys)) == len(keys)
    model_is_finite(run / "model")


@pytest.mark.slow
@settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrink
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=EDITS)
def test_no_nan_or_infinity_reaches_the_outputs_whatever_the_values(tmp_path_factory, base_log, edits):
    tx = base_log.copy()
    for pos, (role, value) in edits:
        tx.iloc[pos % len(tx), tx.columns.get_loc(DEFAULT_COLUMNS[role])] = value
    folder = tmp_path_factory.mktemp("fuzz")
    tx.to_csv(folder / "log.csv", index=False)
    result = pipeline.segment(folder / "log.csv", folder / "run", FAST, progress=False)
    report = json.loads((result.run_dir / "cleaning_report.json").read_text())
    assert report["rows_read"] == len(tx) == report["rows_kept"] + sum(report["rows_dropped"].values())
    assert "2099" not in report["as_of"] and report["as_of"] > "2000"
    check_finite_outputs(result.run_dir)


def test_the_issue_log_with_1e308_amounts_and_1900_2099_dates(tmp_path, base_log):
    tx = base_log.copy()
    amount, day = (tx.columns.get_loc(DEFAULT_COLUMNS[r]) for r in ("amount", "date"))
    tx.iloc[[3, 50, 400], amount] = "1e308"
    tx.iloc[[7, 90], day] = ["1900-01-01", "2099-06-01"]
    tx.to_csv(tmp_path / "log.csv", index=False)
    result = pipeline.segment(tmp_path / "log.csv", tmp_path / "run", FAST, progress=False)
    report = json.loads((result.run_dir / "cleaning_report.json").read_text())
    assert report["rows_dropped"]["implausible_amount"] == 3
    assert report["rows_dropped"]["implausible_date"] == 2
    assert report["as_of"] < "2018"
    check_finite_outputs(result.run_dir)
