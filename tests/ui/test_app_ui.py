"""seglib app in a real browser (issue 18): upload, segment, move both sliders, download, compare.

``seglib app`` is started on a free port with a throwaway project root (no latest run: the page starts
with the upload). Headless Chromium uploads a small generated file whose columns carry other names,
checks the role drop-downs hold seglib's guess, presses Segment, moves the count slider and the
``max_d`` slider through their readouts and checks that the summary cards follow (their number is the
count the sliders show; for ``max_d`` that count is computed here from the linkage of the run the page
made), then downloads ``result.csv`` and ``parameters.yaml`` and compares the file with what
``seglib run --params-file parameters.yaml`` writes for the same upload. Screenshots go to
``reports/ui/app-*.png``. A second test, on an app started with a small upload limit, uploads a file
the app does not read and then one over the limit: each is one readable line in the page, no traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from seglib.cluster import n_clusters_for_distance
from seglib.pipeline import APP_NOTEBOOK

from ._app import AppServer

pytestmark = pytest.mark.ui

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def upload(tmp_path_factory, renamed_export) -> Path:
    return renamed_export(tmp_path_factory.mktemp("app-ui-data"), "shop_export.csv", seed=5)


@pytest.fixture(scope="module")
def app_server(ui_requirements, tmp_path_factory):
    server = AppServer(tmp_path_factory.mktemp("app-server"), APP_NOTEBOOK)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_limit_server(ui_requirements, tmp_path_factory):
    """The app with an upload limit of 0.1 MB (the generated upload is larger)."""
    server = AppServer(tmp_path_factory.mktemp("app-server-small"), APP_NOTEBOOK,
                       args=("--max-upload-mb", "0.1"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def open_app(page, server: AppServer, timeout: float = 120.0) -> None:
    """Open the page and wait for the live widgets (Voila runs the notebook first)."""
    page.goto(server.url, timeout=timeout * 1000)
    page.locator(".widget-upload").first.wait_for(timeout=timeout * 1000)
    server.track()


def slider(page, name: str):
    label = page.locator("label.widget-label", has_text=re.compile(rf"^\s*{re.escape(name)}:?\s*$"))
    return page.locator(".widget-slider").filter(has=label)


def slider_value(page, name: str) -> float:
    return float(slider(page, name).locator(".noUi-handle").get_attribute("aria-valuetext"))


def set_slider(page, name: str, value) -> None:
    """Type ``value`` into the slider's readout and press Enter, as a user would."""
    readout = slider(page, name).locator(".widget-readout")
    readout.fill(str(value))
    readout.press("Enter")
    readout.blur()


def cards(page) -> list[tuple[int, int]]:
    """(segment, customers) of each summary card shown, read in one go (the cards are replaced whole)."""
    raw = page.evaluate("""() => [...document.querySelectorAll('.seglib-card')].map(c => [
        c.getAttribute('data-segment'), c.querySelector('.seglib-card-customers').textContent])""")
    count = re.compile(r"([\d,]+) customers")
    return [(int(seg), int(count.match(text).group(1).replace(",", ""))) for seg, text in raw]


def choose_file(page, path: Path) -> None:
    """Click the upload button and pick ``path`` in the file chooser, as a user would."""
    with page.expect_file_chooser() as chooser:
        page.locator(".widget-upload").first.click()
    chooser.value.set_files(str(path))


def wait_for(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(0.25)


def no_traceback(page) -> None:
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and "File \"" not in text, text[-2000:]


def test_upload_segment_explore_and_download(page, app_server, upload, artifacts, tmp_path):
    open_app(page, app_server)
    assert page.get_by_text("No segmentation to show yet").is_visible()
    page.screenshot(path=str(artifacts / "app-1-start.png"), full_page=True)

    # upload through the page; the role drop-downs show seglib's guess
    choose_file(page, upload)
    page.get_by_text("Check the roles below").wait_for()
    labels = {"customer_id *": "Customer ID", "date *": "order_date", "amount *": "Revenue"}
    for label, column in labels.items():
        dropdown = page.locator(".widget-dropdown").filter(
            has=page.locator("label", has_text=re.compile(rf"^{re.escape(label)}$")))
        assert dropdown.locator("select").input_value() == column, label

    # segment: the progress bar shows while it works, then the cards and the explorer appear
    page.get_by_role("button", name="Segment").click()
    page.locator(".widget-hprogress").wait_for(state="visible")
    page.locator(".seglib-cards").wait_for(timeout=180_000)
    wait_for(lambda: page.get_by_text("Done.").is_visible(), "the progress bar's 'Done.'")
    no_traceback(page)
    k0 = int(slider_value(page, "segments"))
    total = sum(c for _, c in cards(page))
    assert len(cards(page)) == k0 and total == 300
    page.screenshot(path=str(artifacts / "app-2-segmented.png"), full_page=True)
    run_dir = wait_for(app_server.app_runs, "the run the page made")[-1]
    Z = json.loads((run_dir / "processed" / "clustering.json").read_text())["linkage_"]

    # the count slider: the cards follow
    k1 = 4 if k0 != 4 else 5
    set_slider(page, "segments", k1)
    got = wait_for(lambda: (c := cards(page)) and len(c) == k1 and c, f"{k1} cards after the count slider")
    assert [s for s, _ in got] == list(range(1, k1 + 1)) and sum(c for _, c in got) == total
    page.screenshot(path=str(artifacts / "app-3-count-slider.png"), full_page=True)

    # the max_d slider: the count slider jumps to what the cut implies, the cards follow
    lo, hi = (float(slider(page, "max_d").locator(".noUi-handle").get_attribute(a))
              for a in ("aria-valuemin", "aria-valuemax"))
    target = round(lo + 0.03 * (hi - lo), 4)
    implied = n_clusters_for_distance(pd.DataFrame(Z).to_numpy(), target)
    assert implied != k1
    set_slider(page, "max_d", target)
    wait_for(lambda: slider_value(page, "segments") == implied and len(cards(page)) == implied,
             f"count slider and cards at {implied} after max_d = {target}")
    assert sum(c for _, c in cards(page)) == total
    no_traceback(page)
    page.screenshot(path=str(artifacts / "app-4-max-d-slider.png"), full_page=True)

    # download the files of the current cut
    page.get_by_role("button", name="Prepare downloads").click()
    wait_for(lambda: page.locator("a.seglib-download").count() or page.locator(".seglib-error").count(),
             "download links")
    assert not page.locator(".seglib-error").count(), page.locator(".seglib-error").inner_text()
    names = page.locator("a.seglib-download").evaluate_all("links => links.map(a => a.download)")
    assert names == ["result.csv", "segments.csv", "summary.html", "parameters.yaml"]
    saved = {}
    for name in ("result.csv", "parameters.yaml"):
        with page.expect_download() as info:
            page.locator(f"a.seglib-download[download='{name}']").click()
        saved[name] = tmp_path / name
        info.value.save_as(saved[name])
    page.set_viewport_size({"width": 1280, "height": 2600})  # the whole page: Voila scrolls inside it
    page.screenshot(path=str(artifacts / "app-5-downloads.png"), full_page=True)
    result = pd.read_csv(saved["result.csv"])
    assert result["segment"].value_counts().sort_index().tolist() == [c for _, c in cards(page)]

    # the same file and parameters through `seglib run` (the notebooks) give the same result.csv
    out = tmp_path / "cli-run"
    proc = subprocess.run([sys.executable, "-m", "seglib", "run", "--data", str(upload), "--params-file",
                           str(saved["parameters.yaml"]), "--out", str(out), "--no-html", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "result.csv").read_bytes() == saved["result.csv"].read_bytes()


def test_refused_uploads_are_one_line_in_the_page(page, small_limit_server, upload, tmp_path, artifacts):
    open_app(page, small_limit_server)
    error = page.locator(".seglib-error")
    bad = tmp_path / "notes.txt"
    bad.write_text("not a transactions file\n")
    choose_file(page, bad)
    error.wait_for()
    text = error.inner_text().strip()
    assert "notes.txt" in text and "reads .csv" in text and "\n" not in text
    no_traceback(page)
    page.screenshot(path=str(artifacts / "app-6-error.png"))
    assert 0.1e6 < upload.stat().st_size < 1e6
    choose_file(page, upload)
    wait_for(lambda: "upload limit" in error.inner_text(), "the upload limit's error line")
    text = error.inner_text().strip()
    assert upload.name in text and "0.1 MB" in text and "\n" not in text
    no_traceback(page)
    assert page.get_by_role("button", name="Segment").is_disabled()
