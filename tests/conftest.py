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
