"""Fixtures of the browser tests: a throwaway JupyterLab, a headless Chromium, a page per test.

Everything here is session-scoped except the page, and always stopped in a ``finally``. When Chromium
or Playwright is missing the tests are skipped with the reason (``make test-ui`` runs pytest with
``-rs`` so the reason is printed), never passed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ._lab import CHROMIUM, Browser, LabServer

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
#: Screenshots (before / after each slider move, and the whole page of a failed test).
ARTIFACTS = ROOT / "reports" / "ui"


@pytest.fixture(scope="session")
def ui_requirements() -> None:
    """Skip (with the reason) when the browser or its driver is not installed."""
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` "
                    "(make test-ui does it when a package source is reachable)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"playwright is not importable ({exc}): install the `ui` extra (make test-ui does it)")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``reports/ui/``, emptied of the screenshots of an earlier run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory) -> Path:
    """A copy of ``notebooks/`` (the lab may save into what it serves); tests add their own files."""
    root = tmp_path_factory.mktemp("lab-root")
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return root


@pytest.fixture(scope="session")
def lab(ui_requirements, lab_root, tmp_path_factory):
    server = LabServer(lab_root, tmp_path_factory.mktemp("lab-server"), ROOT)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser(ui_requirements, tmp_path_factory):
    chromium = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        chromium.start()
        yield chromium
    finally:
        chromium.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.ui_failed = report.failed
    return report


@pytest.fixture
def page(browser, artifacts, request):
    """A fresh tab; on failure its whole page is saved as ``reports/ui/FAILED-<test>.png``."""
    tab = browser.context.new_page()
    tab.set_default_timeout(30_000)
    try:
        yield tab
        if getattr(request.node, "ui_failed", False):
            name = "".join(c if c.isalnum() or c in "-_" else "-" for c in request.node.name)
            tab.screenshot(path=str(artifacts / f"FAILED-{name}.png"), full_page=True)
    finally:
        browser.track()
        tab.close()
