"""environment.yml and pyproject.toml list the same packages with the same version bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names that differ from the PyPI names (PyPI name -> conda name)
CONDA_NAMES: dict[str, str] = {}
NOT_PACKAGES = {"python", "pip"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_packages(text: str) -> dict[str, str]:
    """name -> version specifier, over the dependencies and every extra."""
    data = tomllib.loads(text)["project"]
    reqs = list(data.get("dependencies", []))
    for extra in data.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    out = {}
    for r in map(Requirement, reqs):
        name = _norm(CONDA_NAMES.get(_norm(r.name), r.name))
        out[name] = str(r.specifier)
    return out


def environment_packages(text: str) -> tuple[dict[str, str], list[str]]:
    """(conda name -> version specifier, pip entries) of an environment.yml."""
    env = yaml.safe_load(text)
    conda, pip = {}, []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            pip.extend(dep.get("pip", []))
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", dep)
        name, spec = _norm(m.group(1)), m.group(2).replace(" ", "")
        if name not in NOT_PACKAGES:
            conda[name] = ",".join(sorted(spec.split(","))) if spec else ""
    return conda, pip


def differences(pyproject_text: str, env_text: str) -> list[str]:
    py = {k: ",".join(sorted(v.split(","))) if v else "" for k, v in
          pyproject_packages(pyproject_text).items()}
    conda, pip = environment_packages(env_text)
    diffs = [f"{n} only in pyproject.toml" for n in sorted(set(py) - set(conda))]
    diffs += [f"{n} only in environment.yml" for n in sorted(set(conda) - set(py))]
    diffs += [f"{n}: pyproject {py[n]!r} != environment.yml {conda[n]!r}"
              for n in sorted(set(py) & set(conda)) if py[n] != conda[n]]
    if "-e ." not in pip:
        diffs.append("environment.yml must install the project with `pip: [-e .]`")
    return diffs


def test_environment_yml_matches_pyproject():
    diffs = differences((ROOT / "pyproject.toml").read_text(), (ROOT / "environment.yml").read_text())
    assert not diffs, "environment.yml and pyproject.toml differ:\n" + "\n".join(diffs)


def test_environment_yml_uses_conda_forge():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]


@pytest.mark.parametrize("side", ["pyproject", "environment"])
def test_sync_check_fails_when_one_side_gains_a_package(side):
    py = (ROOT / "pyproject.toml").read_text()
    env = (ROOT / "environment.yml").read_text()
    if side == "pyproject":
        py = py.replace('"tqdm>=4.66",', '"tqdm>=4.66",\n    "seaborn>=0.13",')
        expected = "seaborn only in pyproject.toml"
    else:
        env = env.replace("  - tqdm>=4.66\n", "  - tqdm>=4.66\n  - seaborn>=0.13\n")
        expected = "seaborn only in environment.yml"
    assert expected in differences(py, env)


def test_sync_check_fails_on_a_different_bound():
    env = (ROOT / "environment.yml").read_text().replace("numpy>=1.26", "numpy>=2.0")
    diffs = differences((ROOT / "pyproject.toml").read_text(), env)
    assert any(d.startswith("numpy:") for d in diffs)
