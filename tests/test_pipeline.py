"""The batch run (seglib run): parameters, run folders, run.json, reproducibility, failures."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from seglib import params, pipeline
from seglib.cli import main
from seglib.errors import ParameterError, PipelineError
from seglib.profile import read_result

RUN_JSON_KEYS = {"parameters", "input_sha256", "versions", "timings", "features", "metrics", "segment_sizes"}
METRIC_KEYS = {"quantization_error", "topographic_error", "cophenetic_correlation", "silhouette"}


FAST = {"n_stability_runs": 2, "k_max": 8}


@pytest.fixture(scope="module")
def first_run(small_data, reports):
    return pipeline.run(data=small_data, parameters=FAST, progress=False)


# ---- parameters -------------------------------------------------------------------------------


def test_every_notebook_declares_out_dir_and_the_first_data_path():
    declared = pipeline.declared_parameters()
    assert list(declared) == [*pipeline.NOTEBOOKS, pipeline.TRACK_NOTEBOOK]
    assert all("out_dir" in params for params in declared.values())
    assert "data_path" in declared["01-clean-transactions.ipynb"]


def test_a_wrong_value_is_refused_before_the_notebooks_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "declared_parameters", lambda *a, **k: pytest.fail("notebooks inspected"))
    with pytest.raises(ParameterError, match=r"method='no-such-method'.*'ward'"):
        pipeline.run(out=tmp_path / "run", parameters={"method": "no-such-method"}, progress=False)
    assert not (tmp_path / "run").exists()


def test_unknown_parameter_lists_the_valid_ones(tmp_path):
    with pytest.raises(ParameterError, match=r"unknown parameter 'n_cluster'.*n_clusters"):
        pipeline.run(out=tmp_path / "run", parameters={"n_cluster": 3}, progress=False)
    assert not (tmp_path / "run").exists()  # nothing written


def test_the_dask_backend_is_pointed_to_seglib_segment(tmp_path):
    with pytest.raises(ParameterError, match="seglib segment --backend dask"):
        pipeline.run(out=tmp_path / "run", parameters={"backend": "dask"}, progress=False)


def test_out_dir_is_reserved(tmp_path):
    with pytest.raises(ParameterError, match="out_dir"):
        pipeline.run(out=tmp_path / "run", parameters={"out_dir": "x"}, progress=False)


def test_cli_reports_bad_parameters_in_one_line(capsys):
    assert main(["run", "-p", "no_such_parameter", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no_such_parameter" in err and "valid parameters" in err


def test_params_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("n_clusters: 5\nmap_shape: [10, 12]\n")
    assert pipeline.load_params_file(f) == {"n_clusters": 5, "map_shape": [10, 12]}
    f.write_text("- just a list\n")
    with pytest.raises(Exception, match="mapping"):
        pipeline.load_params_file(f)


@pytest.mark.parametrize("text, value", [("8", 8), ("1.5", 1.5), ("null", None), ("[15, 10]", [15, 10]),
                                         ("ward", "ward"), ("true", True), ("2020-13-45", "2020-13-45")])
def test_parse_value(text, value):
    assert pipeline.parse_value(text) == value


# ---- a whole run ------------------------------------------------------------------------------


def test_run_with_track_runs_notebook_05_after_04(small_data, reports, tmp_path):
    result = pipeline.run(data=small_data, out=tmp_path / "run", parameters=FAST, progress=False, html=False,
                          track=True)
    run_dir = result.run_dir
    assert (run_dir / pipeline.TRACK_NOTEBOOK).is_file()
    info = json.loads((run_dir / "run.json").read_text())
    assert list(info["timings"]) == [*pipeline.NOTEBOOKS, pipeline.TRACK_NOTEBOOK]
    assert info["track"] is True and info["parameters"]["period"] == "quarter"
    by_period = pd.read_csv(run_dir / "tracking" / "by_period.csv", dtype=str)
    result_ids = set(read_result(run_dir / "result.csv")["customerID"])
    assert set(by_period["customerID"]) == result_ids  # the run's data, every customer in some quarter
    assert not (run_dir / "tracking" / "model").exists()  # the run's model, used as it is


def test_run_writes_everything(first_run, small_data, reports):
    run_dir = first_run.run_dir
    assert run_dir.parent == reports / "runs"
    for name in (*pipeline.NOTEBOOKS, "result.csv", "segments.csv", "cleaning_report.json", "run.json",
                 "report.html", "summary.html"):
        assert (run_dir / name).is_file(), name
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert pngs and all(p.with_suffix(".svg").is_file() for p in pngs)
    assert (reports / "latest").resolve() == run_dir.resolve()

    info = json.loads((run_dir / "run.json").read_text())
    assert RUN_JSON_KEYS <= set(info)
    assert METRIC_KEYS <= set(info["metrics"])
    assert info["parameters"] == {**params.defaults(), **FAST}  # every parameter, defaults filled in
    assert set(info["timings"]) == set(pipeline.NOTEBOOKS)
    assert len(info["input_sha256"]) == 64
    assert info["features"] and "customer_id" not in info["features"]
    assert info["parameters"]["bases"] == "behaviour" and info["bases"] == info["features"]
    assert {"age", "gender_female"} <= set(info["descriptors"])  # who the customers are: not in the map
    assert not set(info["descriptors"]) & set(info["bases"])
    assert set(info["metrics"]["stability"]) == set(info["segment_sizes"])

    segments = pd.read_csv(run_dir / "segments.csv")  # descriptors and stability per segment
    assert {"who", "stability", "mean_jaccard", "age_median", "gender_female_mean"} <= set(segments.columns)
    assert set(segments["stability"]) <= {"stable", "weak", "unstable"}
    stability = json.loads((run_dir / "processed" / "stability.json").read_text())
    assert stability["n_runs"] == 2
    for _, row in segments.iterrows():
        measured = stability["segments"][str(row["segment"])]["mean_jaccard"]
        assert row["mean_jaccard"] == pytest.approx(measured)

    report = json.loads((run_dir / "cleaning_report.json").read_text())
    result = read_result(run_dir / "result.csv")
    assert len(result) == report["customers_kept"] == result["customerID"].nunique()
    assert sum(info["segment_sizes"].values()) == len(result)
    assert list(result.columns[:4]) == ["customerID", "segment", "som_row", "som_col"]


def test_each_notebook_runs_in_a_fresh_kernel(first_run):
    # the runner starts kernels ahead and warms their imports: no trace of that in the notebooks
    import nbformat

    for nb in pipeline.NOTEBOOKS:
        notebook = nbformat.read(first_run.run_dir / nb, as_version=4)
        cells = [c for c in notebook.cells if c.cell_type == "code"]
        assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), nb
        text = json.dumps([c.outputs for c in cells])
        assert "_seglib_warm_up" not in text and "Traceback" not in text, nb
    assert pipeline._imported_modules(pipeline.NOTEBOOK_DIR / pipeline.NOTEBOOKS[0])[0] == "matplotlib.pyplot"


def test_the_runner_starts_its_first_kernel_without_heavy_imports():
    """Before the first kernel starts, the runner imports neither pandas (``seglib run`` needs none) nor
    ``rfc3987_syntax`` (jsonschema's optional IRI checks, ~1 s of grammar compilation); the latter can
    still be imported afterwards."""
    import importlib.util

    code = (
        "import sys\n"
        "from seglib import cli, pipeline\n"
        "pipeline._imported_modules(pipeline.NOTEBOOK_DIR / pipeline.NOTEBOOKS[0])\n"
        "assert 'pandas' not in sys.modules, 'pandas'\n"
        "pipeline._papermill()\n"
        "assert 'papermill' in sys.modules and 'jsonschema' in sys.modules\n"
        "assert 'rfc3987_syntax' not in sys.modules, 'rfc3987_syntax'\n"
    )
    if importlib.util.find_spec("rfc3987_syntax") is not None:
        code += "import rfc3987_syntax\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_report_html_is_standalone_with_figures(first_run):
    html = (first_run.run_dir / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64" in html
    assert "steps.cluster_step(" not in html  # code hidden


def test_summary_cards_show_the_figures_of_segments_csv(first_run):
    """Every segment of segments.csv has its card in summary.html, with the same size and value."""
    page = (first_run.run_dir / "summary.html").read_text()
    table = pd.read_csv(first_run.run_dir / "segments.csv", index_col="segment")
    cards = re.findall(r"<section class='card' id='segment-(\d+)'.*?</section>", page, flags=re.S)
    assert [int(s) for s in cards] == table.index.tolist()
    for seg, row in table.iterrows():
        card = re.search(rf"<section class='card' id='segment-{seg}'.*?</section>", page, flags=re.S).group(0)
        assert html.escape(row["name"]) in card
        assert f"{row['customers']:,} ({row['customer_share']:.1%})" in card
        assert f"<dd>{row['revenue_share']:.1%}</dd>" in card
        assert f"<dd>{row['revenue_share'] / row['customer_share']:.2f}</dd>" in card  # value index
        assert "Suggested action:" in card and "stability" in card


def test_report_opens_with_the_summary_and_every_image_has_alt_text(first_run):
    report = (first_run.run_dir / "report.html").read_text()
    assert report.index("seglib-summary") < report.index("01 - Clean transactions")
    images = re.findall(r"<img[^>]*>", report)
    assert len(images) > 10
    assert all(re.search(r"""alt=["'][^"']{8,}""", tag) for tag in images)
    assert "No description has been provided" not in report


def test_seglib_run_is_quiet(small_data, tmp_path):
    """No log line, kernel warning or nbconvert warning; stdout: one line naming the folder and summary."""
    out = tmp_path / "quiet"
    args = ["run", "--data", str(small_data), "--out", str(out), "--no-progress"]
    for name, value in FAST.items():
        args += ["-p", name, str(value)]
    done = subprocess.run([sys.executable, "-m", "seglib", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "summary.html" in lines[0]


def test_same_input_same_parameters_same_bytes(first_run, small_data, tmp_path):
    again = pipeline.run(data=small_data, out=tmp_path / "again", parameters=FAST, progress=False)
    for name in ("result.csv", "segments.csv", "summary.html"):
        assert (again.run_dir / name).read_bytes() == (first_run.run_dir / name).read_bytes(), name


def test_a_failed_notebook_stops_the_run_and_keeps_it(first_run, small_data, tmp_path):
    before = {p: p.read_bytes() for p in first_run.run_dir.rglob("*") if p.is_file()}
    out = tmp_path / "broken"
    with pytest.raises(PipelineError) as info:
        # a valid value for the registry that notebook 03 cannot honour: more segments than map units
        pipeline.run(data=small_data, out=out, parameters={**FAST, "n_clusters": 10_000},
                     progress=False, html=False)
    message = str(info.value)
    assert "03-cluster-prototypes.ipynb" in message and "n_clusters" in message
    assert len(message.splitlines()) == 1
    assert (out / "03-cluster-prototypes.ipynb").is_file()  # kept for inspection
    assert not (out / "04-profile-segments.ipynb").exists()
    after = {p: p.read_bytes() for p in first_run.run_dir.rglob("*") if p.is_file()}
    assert after == before  # earlier runs are never touched


def test_a_run_never_writes_into_a_used_folder(first_run):
    with pytest.raises(Exception, match="not empty"):
        pipeline.run(out=first_run.run_dir, parameters=FAST, progress=False)


def test_run_on_the_real_sample(real_sample, tmp_path):
    result = pipeline.run(data=real_sample, out=tmp_path / "real", parameters=FAST, progress=False,
                          html=False)
    report = json.loads((result.run_dir / "cleaning_report.json").read_text())
    table = read_result(result.run_dir / "result.csv")
    raw_ids = pd.read_csv(real_sample, dtype=str, keep_default_na=False)["customerID"]
    assert len(table) == report["customers_kept"]
    assert table["customerID"].is_unique
    assert set(table["customerID"]) <= set(raw_ids)


def test_segment_with_every_feature_and_without_stability(small_data, tmp_path):
    """`bases: all` puts age and gender back into the map; `n_stability_runs: 0` measures nothing."""
    from seglib.runner import run_segmentation

    layout = run_segmentation(small_data, tmp_path / "all", bases="all", n_stability_runs=0, progress=False)
    info = json.loads(layout.metrics.read_text())
    assert "age" in info["bases"] and any(f.startswith("gender_") for f in info["bases"])
    assert info["descriptors"] == [] and info["stability"] is None
    assert not layout.stability.exists()
    segments = pd.read_csv(layout.segments_csv)
    assert set(segments["stability"]) == {"not measured"} and segments["mean_jaccard"].isna().all()
    assert (segments["who"] == "close to the average customer").all()  # no descriptor left to describe
    with pytest.raises(ParameterError, match="bases"):
        run_segmentation(small_data, tmp_path / "bad", bases=["agee"], n_stability_runs=0, progress=False)


def test_input_checksums_read_in_the_background_are_the_ones_read_at_once(small_data, tmp_path, monkeypatch):
    import hashlib

    other = tmp_path / "b.csv"
    other.write_bytes(b"customerID\n1\n" * 100_000)
    files = [other, small_data]
    at_once = pipeline._Checksums(files, background=False).result()
    later = pipeline._Checksums(files, background=True).result()
    assert later == at_once and list(later) == list(at_once)  # same files, same order
    assert at_once[pipeline.display_path(other)] == hashlib.sha256(other.read_bytes()).hexdigest()

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pipeline, "_sha256", unreadable)
    background = pipeline._Checksums(files, background=True)
    with pytest.raises(PermissionError, match="Permission denied"):  # raised where the result is asked
        background.result()
