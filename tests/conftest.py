"""Shared fixtures: headless plotting, figure clean-up, the optional real sample."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The 2,000-row sample of the real file; present on developer machines and CI, optional elsewhere.
REAL_SAMPLE = Path(
    os.environ.get("SEGLIB_REAL_SAMPLE", ROOT.parent / "shared" / "data" / "cproducts_sample.csv")
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def real_sample() -> Path:
    """Path of the real sample; the test is skipped when it is absent."""
    if not REAL_SAMPLE.is_file():
        pytest.skip(f"real sample not found at {REAL_SAMPLE} (optional; set SEGLIB_REAL_SAMPLE)")
    return REAL_SAMPLE


#: The original schema's three required columns under the names a shop export might give them.
RENAMED = {"customerID": "Customer ID", "transactionDate": "order_date", "sale_price_after_promo": "Revenue"}


@pytest.fixture(scope="session")
def renamed_export():
    """Write a generated log with its required columns renamed (:data:`RENAMED`), as an upload.

    Call ``renamed_export(folder, name, seed)``; returns the path of ``folder / name``.
    """
    import pandas as pd

    from seglib.synthetic import write_dataset

    def write(folder: Path, name: str, seed: int, n_customers: int = 300) -> Path:
        write_dataset(folder / "orig.csv", n_customers=n_customers, random_state=seed)
        path = folder / name
        pd.read_csv(folder / "orig.csv", dtype=str).rename(columns=RENAMED).to_csv(path, index=False)
        return path

    return write


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Runs go to a throwaway ``reports/`` folder (never the project's, where ``make run`` leaves one)."""
    from seglib import pipeline

    folder = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "REPORTS_DIR", folder)
        yield folder


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A generated log of 600 customers (read only: tests write their runs elsewhere)."""
    from seglib.synthetic import write_dataset

    path, _ = write_dataset(tmp_path_factory.mktemp("data") / "tx.csv", n_customers=600, random_state=3)
    return path


def _file_digests(folder: Path) -> dict:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def digests():
    """``digests(folder)``: the sha256 of every file under ``folder``, by relative path."""
    return _file_digests

