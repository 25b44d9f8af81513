"""Data flows forward only: no step module imports a later step or anything built on top."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seglib"
#: The pipeline steps in order (01 load/clean, 02 features/som, 03 cluster, 04 profile).
STEPS = ["load", "clean", "features", "som", "cluster", "profile"]
#: Modules built on top of the steps.
ON_TOP = ["segmentation", "steps", "notebook", "runner", "pipeline", "distributed", "cli", "widgets", "app"]


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


# ---- private names stay private ------------------------------------------------------------------

#: Private *modules* meant to be shared: ``seglib._files`` (atomic writes, npz model files) by every
#: module; ``seglib.plots._*`` (one per step) by the ``seglib.plots`` package only, which re-exports them.
SHARED_PRIVATE_MODULES = {"seglib._files": "seglib", "seglib.plots._": "seglib.plots"}


def _module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(path: Path, root: Path = PACKAGE) -> list[str]:
    """``_names`` a seglib module takes from another seglib module: imported, or read as ``module._name``."""
    me = _module_name(path, root)
    tree = ast.parse(path.read_text())
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seglib"):
            target = node.module
            shared = [inside for prefix, inside in SHARED_PRIVATE_MODULES.items()
                      if target.startswith(prefix)]
            if shared:
                if not (me == shared[0] or me.startswith(shared[0] + ".")):
                    found.append(f"{me} imports the private module {target}")
            elif any(_private(part) for part in target.split(".")):
                found.append(f"{me} imports the private module {target}")
            for alias in node.names:
                if _private(alias.name) and target != me:
                    found.append(f"{me} imports {target}.{alias.name}")
                if target == "seglib":
                    modules[alias.asname or alias.name] = f"seglib.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("seglib"):
                    modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules and modules[node.value.id] != me):
            found.append(f"{me} reads {modules[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_no_module_uses_another_modules_private_names(path):
    assert private_uses(path) == []


def test_the_private_names_check_can_fail(tmp_path):
    probe = tmp_path / "seglib" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from seglib.cluster import _secret\nfrom seglib import steps\nsteps._hidden()\n"
                     "from seglib.plots._som import plot_hit_map\nfrom seglib._files import write_json\n")
    found = private_uses(probe, root=tmp_path / "seglib")
    assert len(found) == 3, found
    assert any("cluster._secret" in f for f in found) and any("steps._hidden" in f for f in found)
    assert any("seglib.plots._som" in f for f in found)


def test_the_dask_backend_knows_no_notebooks():
    """``distributed`` runs without the notebooks: not the runner, the notebook helpers or the widgets."""
    assert not seglib_imports("distributed") & {"runner", "pipeline", "notebook", "widgets", "cli"}
    source = (PACKAGE / "distributed.py").read_text()
    for helper in ("save_figure", "default_data", ".summary("):
        assert helper not in source, helper


def test_one_runner_chooses_the_backend():
    """The backend choice lives in ``runner``: the Dask module neither runs the in-memory pipeline (no
    ``runner``, no ``*_step`` call) nor chooses a backend; the in-memory path never imports Dask's module."""
    source = (PACKAGE / "distributed.py").read_text()
    assert not re.search(r"\b(clean|som|cluster|profile)_step\(|check_backend|BACKENDS", source)
    for module in STEPS + ["steps", "segmentation", "notebook"]:
        assert "distributed" not in seglib_imports(module), module
    assert "distributed" in seglib_imports("runner") and "steps" in seglib_imports("runner")


def test_the_dask_module_is_plumbing_only():
    """The order of the steps and the run folder's records live in the runner and the steps' writers:
    the Dask module writes none of them, and stays small (issue 16: at most 700 lines)."""
    source = (PACKAGE / "distributed.py").read_text()
    writers = r"\b(write_cleaning|write_som|write_clusters|measure_stability|write_sample|write_tables|" \
              r"save_model|write_segments|write_summary|record_metrics|Segmentation)\b"
    assert not re.findall(writers, source)
    lines = len(source.splitlines())
    assert lines <= 700, f"seglib/distributed.py has {lines} lines; move what is not Dask plumbing out"


def test_the_summary_sits_beside_the_profile_and_labels_stand_alone():
    """summary reads the profile (step 04) and is read by the steps and the pipeline, never the reverse."""
    assert not seglib_imports("summary") & set(ON_TOP)
    assert seglib_imports("labels") <= {"errors"}
    for module in STEPS:
        assert "summary" not in seglib_imports(module)


def test_tracking_is_a_step_after_profile_used_only_by_the_pipeline_and_the_cli():
    """seglib.track may use every step and the saved model; only pipeline and cli import it."""
    allowed = set(STEPS) | {"segmentation", "plots", "params", "errors", "_files", "config"}
    assert seglib_imports("track") <= allowed
    users = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "track" and "track" in seglib_imports(p.stem)}
    assert users <= {"pipeline", "cli"}
