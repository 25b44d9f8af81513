"""Data flows forward only: no step module imports a later step or anything built on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seglib"
#: The pipeline steps in order (01 load/clean, 02 features/som, 03 cluster, 04 profile).
STEPS = ["load", "clean", "features", "som", "cluster", "profile"]
#: Modules built on top of the steps.
ON_TOP = ["segmentation", "steps", "pipeline", "distributed", "cli", "widgets"]


def seglib_imports(module: str) -> set[str]:
    """Every seglib module ``module`` imports, at module level or inside functions."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seglib"):
            found.add(node.module.split(".")[1] if "." in node.module else "")
            found.update(a.name for a in node.names if node.module == "seglib")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("seglib."))
    return found - {""}


@pytest.mark.parametrize("i, module", list(enumerate(STEPS)))
def test_steps_import_no_later_step_and_nothing_on_top(i, module):
    later = set(STEPS[i + 1:]) | set(ON_TOP)
    assert not seglib_imports(module) & later


def test_the_generator_stands_apart():
    assert seglib_imports("synthetic") <= {"errors", "_files", "config"}


def test_only_the_pipeline_knows_the_notebooks():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "pipeline.py":
            assert ".ipynb" not in path.read_text(), path
