"""Notebooks: each runs on its own, and they hold no logic of their own."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from seglib.pipeline import ALL_NOTEBOOKS, NOTEBOOK_DIR

NOTEBOOK_PATHS = [NOTEBOOK_DIR / name for name in ALL_NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebook_shape(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and "In this notebook we" in cells[0].source
    assert cells[-1].cell_type == "markdown" and "## Summary" in cells[-1].source
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one papermill parameters cell"
    for node in ast.parse(params[0].source).body:  # literals only: derived values would not follow -p
        assert isinstance(node, ast.AnnAssign | ast.Assign)
        ast.literal_eval(node.value)
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_notebooks_define_no_functions_or_classes(path: Path):
    """A notebook shows, explains and calls; what it computes lives in seglib (tested there)."""
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
        loops = [n for n in ast.walk(tree) if isinstance(n, ast.For | ast.While)]
        assert not defs and not loops, f"logic in a notebook cell: {cell.source[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_committed_notebooks_have_outputs(path: Path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "execute the notebooks: make notebooks"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))


def test_the_clustering_notebook_runs_first_on_a_fresh_clone(tmp_path, monkeypatch):
    """A user who opens notebook 03 first on a fresh clone gets the data, the cleaned data and the map
    built for them with the default parameters (the project's own data/ layout: out_dir None).

    ``SEGLIB_ROOT`` makes an empty folder the project root for the kernel; a given run folder that lacks
    its inputs is an error instead (tests/test_steps.py).
    """
    import papermill as pm

    clone = tmp_path / "clone"
    clone.mkdir()
    monkeypatch.setenv("SEGLIB_ROOT", str(clone))
    pm.execute_notebook(str(NOTEBOOK_DIR / "03-cluster-prototypes.ipynb"), str(tmp_path / "03.ipynb"),
                        parameters={"n_stability_runs": 2, "k_max": 6},
                        kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK_DIR))
    for artifact in ("data/raw/transactions.csv", "data/interim/transactions.parquet",
                     "data/processed/som/som.json", "data/processed/segments.parquet",
                     "reports/cleaning_report.json", "reports/figures/03-segment-map.png"):
        assert (clone / artifact).is_file(), artifact
