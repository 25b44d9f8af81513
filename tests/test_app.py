"""seglib app: the dashboard's model and controller, without a browser (the browser test: tests/ui).

One small generated file is uploaded and segmented once per module; the tests then move the sliders,
check that the cards follow the cut, download the files and compare ``result.csv`` with what
``seglib.pipeline.segment`` writes from the downloaded ``parameters.yaml``.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from seglib import app as seglib_app
from seglib import cli, pipeline
from seglib.app import App, check_upload, voila_argv
from seglib.errors import InputError, ParameterError
from seglib.load import DEFAULT_COLUMNS, ROLES, guess_columns

#: The generated file's columns renamed the way another shop's export might call them.


@pytest.fixture(scope="module", autouse=True)
def no_project_runs(reports):
    """An empty ``reports/`` for every test here: an App given no run must start from the upload,
    whatever runs the checkout holds (``make run`` before ``make test`` leaves one in reports/latest)."""
    return reports


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory, renamed_export) -> Path:
    return renamed_export(tmp_path_factory.mktemp("app-data"), "shop export.csv", seed=3)


@pytest.fixture(scope="module")
def segmented(upload_file, tmp_path_factory):
    """An app that received the upload and segmented it (small map for speed)."""
    app = App(progress=False, workdir=tmp_path_factory.mktemp("app-work"))
    app.receive_upload(upload_file.name, upload_file.read_bytes())
    run_dir = app.segment()
    assert app.error_text == ""
    return app, run_dir


def cards_of(app: App) -> list[tuple[int, int]]:
    """(segment, customers) of each card the page shows, read back from its HTML."""
    import re

    html = app.cards.value
    segs = [int(s) for s in re.findall(r"data-segment='(\d+)'", html)]
    counts = [int(c.replace(",", "")) for c in re.findall(r"seglib-card-customers'>([\d,]+) customers", html)]
    return list(zip(segs, counts, strict=True))


# ---------------------------------------------------------------------------------------- the guess


def test_guess_columns_finds_the_default_schema_and_usual_names():
    guess = guess_columns(list(DEFAULT_COLUMNS.values()))
    assert {role: col for role, col in guess.items() if role in DEFAULT_COLUMNS} == DEFAULT_COLUMNS
    assert all(col is None for role, col in guess.items() if role not in DEFAULT_COLUMNS)
    qty = guess_columns(["InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"])
    assert (qty["quantity"], qty["unit_price"], qty["amount"]) == ("Quantity", "UnitPrice", None)
    found = ["Order Date", "CUSTOMER_ID", "net-amount", "Sex", "zip", "notes"]
    guess = guess_columns(found)
    assert set(guess) == set(ROLES)
    roles = (guess["customer_id"], guess["date"], guess["amount"])
    assert roles == ("CUSTOMER_ID", "Order Date", "net-amount")
    assert (guess["gender"], guess["pincode"], guess["dob"]) == ("Sex", "zip", None)
    assert "notes" not in guess.values()


def test_guess_columns_uses_a_column_for_one_role_only():
    guess = guess_columns(["customer", "date", "amount", "transaction"])
    chosen = [c for c in guess.values() if c is not None]
    assert len(chosen) == len(set(chosen))


def same_cards(a: list[dict], b: list[dict]) -> bool:
    """Equal card lists (NaN equals NaN)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def shown(app: App, field: str) -> list[str]:
    """One figure of every card the page shows (``value-index``, ``stability``, ...), as written."""
    import re

    return re.findall(rf"class='seglib-card-{field}'>([^<]*)<", app.cards.value)


def expected_cards(app: App, stability=None) -> list[dict]:
    """seglib.summary's cards of the app's current cut, with the run's descriptors and currency."""
    from seglib.features import descriptor_columns
    from seglib.summary import segment_cards

    som_step = app.opened.cluster.som_step
    descriptors = descriptor_columns(som_step.customers.columns, som_step.feature_names,
                                     som_step.pipeline["features"].dropped_)
    return segment_cards(som_step.customers, app.labels(), stability=stability, descriptors=descriptors,
                         currency=app.opened.parameters.get("currency"))


# ---------------------------------------------------------------------------------------- uploads


@pytest.mark.parametrize("name, size, message", [
    ("sales.xlsx", 10, "the app reads"), ("run.py", 10, "the app reads"),
    ("big.csv", 3_000_001, "upload limit"),
    ("empty.csv", 0, "empty"),
])
def test_check_upload_refuses_with_the_file_name(name, size, message):
    with pytest.raises(InputError, match=message) as info:
        check_upload(name, size, max_upload_mb=3)
    assert name in str(info.value)


def test_check_upload_accepts_the_readable_types():
    suffixes = [check_upload(n, 10) for n in ("a.CSV", "b.csv.gz", "c.parquet")]
    assert suffixes == [".csv", ".csv.gz", ".parquet"]


def test_an_upload_goes_to_a_private_folder_under_a_name_of_the_apps_choosing(tmp_path, upload_file):
    app = App(progress=False, workdir=tmp_path / "work", run_dir=None)
    path = app.receive_upload("../../etc/evil name.csv", upload_file.read_bytes())
    assert path.parent.parent == tmp_path / "work" and path.name == "upload-1.csv"
    assert stat.S_IMODE((tmp_path / "work").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == upload_file.read_bytes()
    assert not (tmp_path / "etc").exists()


def test_a_refused_upload_is_one_line_in_the_page_never_an_exception(tmp_path):
    app = App(progress=False, workdir=tmp_path, max_upload_mb=0.001)
    app.on_upload({"new": ({"name": "sales.csv", "content": memoryview(b"x" * 5000)},)})
    assert "upload limit" in app.error_text and "\n" not in app.error_text
    assert app.upload.value == ()  # the widget's copy of the bytes is dropped
    assert "Traceback" not in app.error.value
    assert app.segment_button.disabled
    app.on_upload({"new": ({"name": "tool.exe", "content": memoryview(b"MZ")},)})
    assert "tool.exe" in app.error_text


def test_the_private_folder_is_removed_on_close(upload_file):
    app = App(progress=False)
    path = app.receive_upload(upload_file.name, upload_file.read_bytes())
    assert path.is_file() and path.is_relative_to(app.workdir)
    app.close()
    assert not app.workdir.exists()


def test_unknown_bytes_with_a_csv_name_give_one_line(tmp_path):
    app = App(progress=False, workdir=tmp_path)
    app.on_upload({"new": ({"name": "x.csv", "content": memoryview(b"just one line without roles\n")},)})
    app.on_segment()
    assert app.error_text and "\n" not in app.error_text and app.opened is None


def test_the_upload_limit_is_checked(tmp_path):
    with pytest.raises(ParameterError, match="max_upload_mb"):
        App(workdir=tmp_path, max_upload_mb=0)


def test_a_bad_run_folder_at_start_is_one_line_and_the_page_still_works(tmp_path):
    app = App(run_dir=tmp_path / "nothing-here", progress=False, workdir=tmp_path / "w")
    assert "holds no segmentation" in app.error_text
    assert app.opened is None and app.upload is not None


# ---------------------------------------------------------------------------------------- the flow


def test_the_roles_are_prefilled_with_the_guess(segmented):
    app, _ = segmented
    chosen = {role: dd.value for role, dd in app.roles.items()}
    assert chosen["customer_id"] == "Customer ID" and chosen["date"] == "order_date"
    assert chosen["amount"] == "Revenue" and chosen["gender"] == "Gender"


def test_a_required_role_left_empty_is_an_error_line(segmented, tmp_path, upload_file):
    app = App(progress=False, workdir=tmp_path)
    app.receive_upload(upload_file.name, upload_file.read_bytes())
    app.roles["amount"].value = None
    app.on_segment()
    assert "required role 'amount'" in app.error_text and app.opened is None


def test_cards_keep_each_segments_colour_when_a_segment_has_no_customers(segmented):
    from seglib.app import cards_html
    from seglib.plots import segment_colors

    app, _ = segmented
    labels = np.where(np.arange(len(app.labels())) % 2 == 0, 1, 3)  # segments 1 and 3, no 2
    cards = app.segment_cards(labels)
    assert [c["segment"] for c in cards] == [1, 3]
    html = cards_html(cards)
    assert html.count("seglib-card'") == 2 and segment_colors(3)[2] in html


def test_segmenting_shows_the_cut_and_the_cards(segmented):
    app, run_dir = segmented
    assert (run_dir / "result.csv").is_file() and (run_dir / "run.json").is_file()
    assert app.bar.value == app.bar.max
    k = app.n_clusters
    cards = cards_of(app)
    assert [s for s, _ in cards] == list(range(1, k + 1))
    assert sum(c for _, c in cards) == len(app.opened.cluster.segments)
    assert len(app.heatmap.outputs) == 1 and "image/png" in app.heatmap.outputs[0]["data"]


@pytest.mark.parametrize("k", [3, 6, 7])
def test_the_cards_follow_the_count_slider(segmented, k):
    app, _ = segmented
    before = app.heatmap.outputs[0]["data"]["image/png"]
    app.explorer.k_slider.value = k
    assert app.error_text == ""
    cards = cards_of(app)
    assert len(cards) == k == app.n_clusters
    expected = app.labels().value_counts().sort_index()
    assert [c for _, c in cards] == expected.tolist()
    assert app.heatmap.outputs[0]["data"]["image/png"] != before
    # the cards are seglib.summary's for this cut; a cut moved with the sliders was not measured
    kept = app.opened.cluster.segments["segment"].to_numpy()
    if np.array_equal(app.labels().to_numpy(), kept):  # the slider is back on the run's own cut: measured
        assert same_cards(app.shown_cards, expected_cards(app, app.opened.cluster.stability_table()))
        assert "not measured" not in shown(app, "stability")
    else:
        assert same_cards(app.shown_cards, expected_cards(app))
        assert shown(app, "stability") == ["not measured"] * k
    assert shown(app, "value-index") == [f"{c['value_index']:.2f}" for c in app.shown_cards]
    actions = [c["action"]["action"] for c in app.shown_cards]
    assert all(f"Suggested action: <b>{a}</b>" in app.cards.value for a in actions)


def test_the_cards_follow_the_distance_slider(segmented):
    app, _ = segmented
    from seglib.cluster import n_clusters_for_distance

    app.explorer.k_slider.value = 2
    lo, hi = app.explorer.d_slider.min, app.explorer.d_slider.max
    d = lo + 0.02 * (hi - lo)
    app.explorer.d_slider.value = d
    implied = n_clusters_for_distance(app.explorer.Z, app.explorer.d_slider.value)
    assert implied > 2
    assert app.n_clusters == implied == app.explorer.k_slider.value == len(cards_of(app))
    assert same_cards(app.shown_cards, expected_cards(app))
    assert shown(app, "value-index") == [f"{c['value_index']:.2f}" for c in app.shown_cards]


def test_the_kept_cut_shows_the_stability_step_03_measured_and_only_it(segmented, tmp_path):
    from seglib.summary import summary_html

    _, run_dir = segmented
    app = App(run_dir=run_dir, progress=False, workdir=tmp_path)
    kept_k = app.n_clusters
    table = pd.read_csv(run_dir / "segments.csv", index_col="segment")
    assert table["stability"].ne("not measured").all()  # the run measured it (n_stability_runs > 0)
    assert [c["stability"]["verdict"] for c in app.shown_cards] == table["stability"].tolist()
    assert np.allclose([c["stability"]["jaccard"] for c in app.shown_cards], table["mean_jaccard"])
    assert summary_html(app.shown_cards) == (run_dir / "summary.html").read_text(encoding="utf-8")
    assert shown(app, "stability")[0].startswith(table["stability"].iloc[0])
    app.explorer.k_slider.value = kept_k + 1
    assert shown(app, "stability") == ["not measured"] * (kept_k + 1)
    app.explorer.k_slider.value = kept_k  # back to the kept cut: its verdicts again
    assert [c["stability"]["verdict"] for c in app.shown_cards] == table["stability"].tolist()


def test_downloads_reproduce_with_the_parameters_file(segmented, upload_file, tmp_path):
    app, _ = segmented
    app.explorer.k_slider.value = 5
    files = app.prepare_downloads()
    assert set(files) == {"result.csv", "segments.csv", "summary.html", "parameters.yaml"}
    assert app.download_links.value.count("download=") == 4
    given = yaml.safe_load(files["parameters.yaml"].read_text())
    assert given["n_clusters"] == 5 and given["max_d"] is None
    assert given["columns"]["amount"] == "Revenue"
    # what `seglib segment --params-file` does (the browser test runs `seglib run`, the notebooks)
    again = pipeline.segment(upload_file, out=tmp_path / "again", params_file=files["parameters.yaml"],
                             progress=False)
    assert files["result.csv"].read_bytes() == (again.run_dir / "result.csv").read_bytes()
    assert files["segments.csv"].read_bytes() == (again.run_dir / "segments.csv").read_bytes()
    result = pd.read_csv(files["result.csv"])
    assert sorted(result["segment"].unique()) == [1, 2, 3, 4, 5]
    assert result["segment"].value_counts().sort_index().tolist() == [c for _, c in cards_of(app)]


def test_a_download_measures_the_cut_and_the_page_shows_what_summary_html_holds(segmented):
    from seglib.summary import summary_html

    app, _ = segmented
    app.explorer.k_slider.value = 4
    assert {c["stability"]["verdict"] for c in app.shown_cards} == {"not measured"}
    files = app.prepare_downloads()
    table = pd.read_csv(files["segments.csv"], index_col="segment")
    verdicts = [c["stability"]["verdict"] for c in app.shown_cards]
    assert verdicts == table["stability"].tolist() and "not measured" not in verdicts
    assert files["summary.html"].read_text(encoding="utf-8") == summary_html(app.shown_cards)
    assert same_cards(app.shown_cards, app.segment_cards())  # the measured cut, recomputed


def test_the_parameters_file_holds_every_run_parameter(segmented):
    from seglib import params

    app, _ = segmented
    assert list(app.parameters()) == params.names() == pipeline.valid_parameters()
    written = yaml.safe_load(app.parameters_yaml())
    assert params.effective(written) == app.parameters()


def test_moving_the_cut_drops_the_old_download_links(segmented):
    app, _ = segmented
    app.explorer.k_slider.value = 4
    app.prepare_downloads()
    assert app.download_links.value
    app.explorer.k_slider.value = 7
    assert app.download_links.value == "" and app.downloads == {}


def test_a_run_folder_opens_with_its_parameters(segmented, tmp_path):
    _, run_dir = segmented
    opened = App(run_dir=run_dir, progress=False, workdir=tmp_path)
    assert opened.error_text == "" and opened.opened.run_dir == run_dir
    recorded = json.loads((run_dir / "run.json").read_text())["parameters"]
    assert opened.parameters()["columns"] == recorded["columns"]
    chosen = json.loads((run_dir / "processed" / "clustering.json").read_text())["n_clusters_"]
    assert recorded["n_clusters"] in ("auto", chosen)  # the default lets the run choose k
    assert opened.n_clusters == chosen
    segments = pd.read_parquet(run_dir / "processed" / "segments.parquet")
    assert np.array_equal(opened.labels().to_numpy(), segments["segment"].to_numpy())


def test_a_run_downloads_its_own_files_when_the_cut_is_unchanged(segmented, tmp_path):
    _, run_dir = segmented
    opened = App(run_dir=run_dir, progress=False, workdir=tmp_path)
    files = opened.prepare_downloads()
    assert files["result.csv"].read_bytes() == (run_dir / "result.csv").read_bytes()
    assert files["segments.csv"].read_bytes() == (run_dir / "segments.csv").read_bytes()


def test_the_run_list_offers_saved_runs_newest_first_and_opens_one(segmented, tmp_path, monkeypatch):
    import shutil

    _, run_dir = segmented
    reports = tmp_path / "reports"
    for name in ("20260101-000000", "20260202-000000"):
        shutil.copytree(run_dir, reports / "runs" / name)
    (reports / "runs" / "20260303-000000").mkdir()  # a failed run: no segments, not offered
    monkeypatch.setattr(pipeline, "REPORTS_DIR", reports)
    app = App(progress=False, workdir=tmp_path / "w")
    assert app.opened is None  # no reports/latest
    assert [label for label, _ in app.run_list.options] == ["20260202-000000", "20260101-000000"]
    app.run_list.value = reports / "runs" / "20260101-000000"
    app.on_open_run()
    assert app.error_text == "" and app.opened.run_dir.name == "20260101-000000"
    assert len(cards_of(app)) == app.n_clusters


# ---------------------------------------------------------------------------------------- serving


def test_the_command_listens_on_this_machine_by_default():
    args = cli.build_parser().parse_args(["app"])
    assert (args.host, args.port, args.no_browser) == ("127.0.0.1", 8866, False)
    assert args.max_upload_mb == seglib_app.DEFAULT_MAX_UPLOAD_MB
    args = cli.build_parser().parse_args(["app", "--port", "9000", "--host", "0.0.0.0", "--no-browser"])
    assert (args.host, args.port, args.no_browser) == ("0.0.0.0", 9000, True)


def test_the_voila_arguments():
    argv = voila_argv(pipeline.APP_NOTEBOOK, port=9001, no_browser=True)
    assert argv[0] == str(pipeline.APP_NOTEBOOK)
    assert {"--port=9001", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--show_tracebacks=False",
            "--no-browser"} <= set(argv)


def test_the_command_refuses_a_missing_run_in_one_line(tmp_path, capsys):
    assert cli.main(["app", "--run", str(tmp_path / "missing"), "--no-browser"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------- the notebook


def test_the_app_notebook_only_calls_seglib():
    import ast

    nb = nbformat.read(str(pipeline.APP_NOTEBOOK), as_version=4)
    assert "In this notebook we" in nb.cells[0].source and "## Summary" in nb.cells[-1].source
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda
                                                                | ast.For | ast.While | ast.If)]


def test_the_app_notebook_runs_and_opens_the_run_it_is_given(segmented, tmp_path, monkeypatch):
    import papermill as pm

    _, run_dir = segmented
    monkeypatch.setenv(seglib_app.ENV_RUN, str(run_dir))
    out = tmp_path / "app.ipynb"
    pm.execute_notebook(str(pipeline.APP_NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(pipeline.NOTEBOOK_DIR))
    nb = nbformat.read(str(out), as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    state = json.dumps(nb.metadata.get("widgets", {}))  # the widgets' values as the kernel left them
    assert f"Showing <b>{run_dir.name}</b>" in state and "seglib-error" not in state
