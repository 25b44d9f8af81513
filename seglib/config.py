"""Project paths and the layout of every step's artifacts.

Paths are resolved from the project root, never from the working directory, so notebooks run the
same under JupyterLab (cwd = ``notebooks/``), papermill (cwd = the caller's) and nbval. The root is
``$SEGLIB_ROOT`` when set, else the folder holding seglib's ``pyproject.toml`` (an editable install
or a checkout), else the working directory.

A :class:`Layout` names where each step reads and writes. With ``out_dir=None`` it is the
cookiecutter-data-science layout (``data/interim``, ``data/processed``, ``reports/``); with an
``out_dir`` (a batch run's folder) everything of that run lives below it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROJECT_ROOT", "DATA_DIR", "DEFAULT_DATA", "Layout", "display_path", "project_root", "resolve"]


def project_root() -> Path:
    """Return the project root (see module docstring)."""
    env = os.environ.get("SEGLIB_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file() and (here / "seglib").is_dir():
        return here
    return Path.cwd().resolve()


PROJECT_ROOT = project_root()
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DATA = DATA_DIR / "raw" / "transactions.csv"
#: Customers in the bundled default data set (small: every notebook runs in seconds).
DEFAULT_CUSTOMERS = 3000
#: Seed of the bundled default data set.
DEFAULT_DATA_SEED = 42
#: ``seglib app``: where it listens by default (this machine only), and the largest upload in MB
#: (10**6 bytes; 50 MB holds about a million transaction lines of the original schema; larger logs
#: belong to ``seglib segment``). Here so the command line knows them without importing the app.
APP_HOST = "127.0.0.1"
APP_PORT = 8866
APP_MAX_UPLOAD_MB = 50.0


def resolve(path: str | os.PathLike | None, default: Path | None = None) -> Path | None:
    """Resolve ``path`` against the project root (absolute paths are kept); ``None`` -> ``default``."""
    if path is None:
        return default
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p)


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the project root when inside it (for reports and notebooks), else as given."""
    p = Path(path)
    try:
        return p.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(p)


@dataclass(frozen=True)
class Layout:
    """Where each pipeline step reads and writes.

    Parameters
    ----------
    root : Path
        Folder of the run's outputs (``result.csv``, ``segments.csv``, ``cleaning_report.json``,
        ``figures/``, ``model/``).
    interim : Path
        Cleaned transactions (step 01).
    processed : Path
        Customer features, the SOM, the segments (steps 02-03).
    """

    root: Path
    interim: Path
    processed: Path

    @classmethod
    def for_run(cls, out_dir: str | os.PathLike | None = None) -> "Layout":
        """The project's default layout (``out_dir=None``) or the layout of a run folder."""
        if out_dir is None:
            return cls(PROJECT_ROOT / "reports", DATA_DIR / "interim", DATA_DIR / "processed")
        root = resolve(out_dir)
        return cls(root, root / "interim", root / "processed")

    # step 01
    @property
    def clean_transactions(self) -> Path:
        return self.interim / "transactions.parquet"

    @property
    def cleaning_report(self) -> Path:
        return self.root / "cleaning_report.json"

    # step 02
    @property
    def customers(self) -> Path:
        """Customer feature table in original units."""
        return self.processed / "customers.parquet"

    @property
    def scaled(self) -> Path:
        """The scaled feature matrix the SOM was trained on (one row per customer)."""
        return self.processed / "scaled.parquet"

    @property
    def features_spec(self) -> Path:
        """Fitted feature builder and scaler (JSON)."""
        return self.processed / "features.json"

    @property
    def som_dir(self) -> Path:
        return self.processed / "som"

    # step 03
    @property
    def segments(self) -> Path:
        """Customer -> best unit -> segment."""
        return self.processed / "segments.parquet"

    @property
    def clustering(self) -> Path:
        """Linkage, cut and unit -> segment map (JSON)."""
        return self.processed / "clustering.json"

    @property
    def stability(self) -> Path:
        """Stability of the kept segments over resamples (JSON, ``StabilityResult.to_dict``)."""
        return self.processed / "stability.json"

    # step 04
    @property
    def result(self) -> Path:
        return self.root / "result.csv"

    @property
    def segments_csv(self) -> Path:
        return self.root / "segments.csv"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def sample(self) -> Path:
        """A Dask run above ``max_collect``: what is exact beside the sampled customer tables (JSON)."""
        return self.processed / "sample.json"

    @property
    def metrics(self) -> Path:
        """Quality figures and facts each step records for ``run.json`` (JSON, merged by key)."""
        return self.processed / "metrics.json"

    def makedirs(self) -> "Layout":
        """Create the folders; returns self."""
        for p in (self.root, self.interim, self.processed, self.figures):
            p.mkdir(parents=True, exist_ok=True)
        return self
