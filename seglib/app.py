"""The explorer for people who do not run notebooks: the model and controller behind ``seglib app``.

``seglib app`` serves a dashboard with Voila: a notebook of its own that only calls
:func:`dashboard`. Everything the page does is here, as widgets built by functions and callbacks
as methods of :class:`App`, so it is tested without a browser::

    app = App(run_dir="reports/latest")          # or App() to start from an upload
    app.receive_upload("sales.csv", data)       # what the upload widget calls
    app.roles["amount"].value = "revenue"       # the role drop-downs, pre-filled with seglib's guess
    app.segment()                               # the 'Segment' button: seglib.pipeline.segment
    app.explorer.k_slider.value = 5              # the linked sliders (seglib.widgets.ClusterExplorer)
    app.prepare_downloads()                      # result.csv, segments.csv, summary.html, parameters.yaml

Safe by default: uploads larger than ``max_upload_mb`` are refused; an upload is written, under a
name of the app's choosing, to a private temporary folder (mode 0700) and only ever read as data;
the page has no field that takes a path (the folders it opens come from the command line); an error
shows as one line in the page (the traceback goes to the server's log, never to the page).

The segmentation is seglib's own: a new file goes through :func:`seglib.pipeline.segment`, a change
of the cut through :func:`seglib.steps.cluster_step` and :func:`seglib.steps.profile_step` on the
trained map, so the downloaded ``result.csv`` is the one ``seglib run --params-file parameters.yaml``
writes for the same file.
"""

from __future__ import annotations

import atexit
import base64
import functools
import html
import io
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from seglib import params
from seglib.config import APP_HOST, APP_MAX_UPLOAD_MB, APP_PORT, Layout, resolve
from seglib.errors import InputError, ParameterError, SeglibError

__all__ = [
    "App", "DEFAULT_HOST", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PORT", "UPLOAD_SUFFIXES", "check_upload",
    "dashboard", "latest_run", "run_parameters", "saved_runs", "serve", "voila_argv",
]

logger = logging.getLogger(__name__)

#: Where the app listens by default (this machine only), and the largest upload accepted in MB
#: (10**6 bytes): 50 MB holds about a million transaction lines of the original schema; larger logs
#: belong to ``seglib segment`` (which can use Dask).
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_UPLOAD_MB = APP_HOST, APP_PORT, APP_MAX_UPLOAD_MB
#: File types the upload accepts (what :func:`seglib.load.load_transactions` reads).
UPLOAD_SUFFIXES = (".csv", ".csv.gz", ".parquet")
#: How the command line hands its options to the dashboard's kernel.
ENV_RUN, ENV_DATA, ENV_MAX_UPLOAD = "SEGLIB_APP_RUN", "SEGLIB_APP_DATA", "SEGLIB_APP_MAX_UPLOAD_MB"
#: Steps of a segmentation as the progress bar names them (``on_step`` of seglib.pipeline.segment).
STEP_LABELS = {"clean": "Cleaning the transactions", "som": "Training the map",
               "cluster": "Clustering the map", "profile": "Profiling the segments"}
NONE = "(none)"


# ---------------------------------------------------------------------------------------- helpers


def check_upload(name: str, size: int, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> str:
    """Check an uploaded file's name and size; return the suffix it is stored under.

    Raises :class:`~seglib.errors.InputError` naming the file and what is accepted.
    """
    lower = str(name).lower()
    suffix = next((s for s in sorted(UPLOAD_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)
    if suffix is None:
        raise InputError(f"{name}: not a transactions file; the app reads {', '.join(UPLOAD_SUFFIXES)}")
    if size > max_upload_mb * 1e6:
        raise InputError(f"{name}: {size / 1e6:.1f} MB is more than the upload limit of "
                         f"{max_upload_mb:g} MB; segment larger files with `seglib segment` "
                         "(or start the app with --max-upload-mb)")
    if size == 0:
        raise InputError(f"{name}: the file is empty")
    return suffix


def latest_run() -> Path | None:
    """The newest run (``reports/latest``) when it holds segments, else None."""
    from seglib.pipeline import REPORTS_DIR

    latest = REPORTS_DIR / "latest"
    return latest.resolve() if _has_segments(latest) else None


def saved_runs() -> list[Path]:
    """Run folders under ``reports/runs/`` that hold a segmentation, newest first (the page's run list)."""
    from seglib.pipeline import REPORTS_DIR

    runs = REPORTS_DIR / "runs"
    found = [p for p in runs.iterdir() if p.is_dir() and _has_segments(p)] if runs.is_dir() else []
    return sorted(found, key=lambda p: p.name, reverse=True)


def _has_segments(run_dir: Path) -> bool:
    """True when the run folder holds the segmentation of every customer (not a Dask run's sample)."""
    layout = Layout.for_run(run_dir)
    needed = (layout.segments, layout.clustering, layout.customers, layout.scaled, layout.features_spec,
              layout.som_dir / "som.json")
    return all(p.is_file() for p in needed) and not layout.sample.is_file()


def _no_segments(run_dir: Path) -> str:
    """Why the app cannot open ``run_dir`` (see :func:`_has_segments`)."""
    if Layout.for_run(run_dir).sample.is_file():
        return (f"run folder {run_dir} is a Dask run with more customers than max_collect: its tables hold a "
                "sample, and the app's downloads need every customer. Open it in notebooks 03 and 04 "
                f"(out_dir={str(run_dir)!r}), which work on the sample; every customer's segment is in its "
                "result/part-* files")
    return (f"run folder {run_dir} holds no segmentation (processed/segments.parquet, clustering.json, the "
            "SOM): give a `seglib run` or `seglib segment` folder")


def run_parameters(run_dir: Path) -> dict:
    """The run parameters a run was made with (``run.json``), registry names only, defaults filled in."""
    values = params.defaults()
    path = Path(run_dir) / "run.json"
    if path.is_file():
        recorded = json.loads(path.read_text()).get("parameters", {})
        values.update({k: v for k, v in recorded.items() if k in values})
    return values


def _segment_parameters() -> set[str]:
    """Names of the run parameters :func:`seglib.pipeline.segment` takes (the pandas pipeline's)."""
    import inspect

    from seglib import runner

    taken = inspect.signature(runner.run_segmentation).parameters
    return {n for n, p in taken.items() if p.kind is p.KEYWORD_ONLY} & set(params.names())


def _one_line(exc: BaseException) -> str:
    """An error as one readable line: seglib's own messages as they are, others with their type."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, SeglibError) else f"{type(exc).__name__}: {text}"


def _guarded(method):
    """Run a callback; an error becomes one line in the page (the traceback goes to the log)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        self.error.value = ""
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # a page must show a line, never a traceback
            logger.debug("%s failed", method.__name__, exc_info=True)
            self.show_error(exc)
            return None

    return wrapper


def _png(fig: Figure, dpi: int = 80) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _show_png(output: widgets.Output, fig: Figure, text: str, dpi: int = 80) -> None:
    """Put ``fig`` into ``output`` as a PNG (replacing what it showed; no pyplot involved)."""
    output.outputs = ({"output_type": "display_data", "metadata": {},
                       "data": {"image/png": _png(fig, dpi), "text/plain": text}},)


def _download_link(name: str, data: bytes, mime: str) -> str:
    payload = base64.b64encode(data).decode("ascii")
    return (f"<a class='seglib-download' download='{html.escape(name)}' "
            f"href='data:{mime};base64,{payload}' style='margin-right:1.5em'>"
            f"&#x2B07; {html.escape(name)}</a>")


# ---------------------------------------------------------------------------------------- widgets


def upload_widget() -> widgets.FileUpload:
    """The upload button (one file: CSV, gzip CSV or Parquet)."""
    return widgets.FileUpload(accept=",".join(UPLOAD_SUFFIXES + (".gz",)), multiple=False,
                              description="Upload transactions", layout=widgets.Layout(width="auto"))


def role_dropdowns(columns: list[str], guess: dict[str, str | None]) -> dict[str, widgets.Dropdown]:
    """One drop-down per role, listing the file's columns, set to seglib's guess.

    Required roles must name a column; optional ones may be ``(none)``.
    """
    from seglib.load import REQUIRED_ROLES, ROLES

    out = {}
    for role in ROLES:
        required = role in REQUIRED_ROLES
        options = list(columns) if required else [NONE, *columns]
        value = guess.get(role) or (None if required else NONE)
        label = f"{role}{' *' if required else ''}"
        out[role] = widgets.Dropdown(options=options, value=value, description=label,
                                     style={"description_width": "120px"},
                                     layout=widgets.Layout(width="360px"))
    return out


def bases_widget() -> widgets.Dropdown | None:
    """The choice of bases (the features that form the segments), when seglib has a ``bases`` parameter.

    None when the registry has no ``bases`` or the pipeline does not take it (then every feature is a
    basis, and the page says nothing it cannot do).
    """
    if "bases" not in _segment_parameters():
        return None
    try:
        spec = params.by_name("bases")
    except ParameterError:
        return None
    choices = list(spec.choices) or [spec.default]
    default = spec.default if spec.default in choices else choices[0]
    return widgets.Dropdown(options=choices, value=default, description="bases",
                            style={"description_width": "120px"}, layout=widgets.Layout(width="360px"),
                            tooltip=spec.help)


def cards_html(cards: list[dict]) -> str:
    """The summary cards of a cut as compact HTML boxes (one per segment, in the segment's colour).

    ``cards`` come from :func:`seglib.summary.segment_cards`; the figures are written by
    :func:`seglib.summary.cards_table`, so they read as in ``summary.html``.
    """
    from seglib.plots import segment_colors
    from seglib.summary import cards_table

    e = html.escape
    colors = segment_colors(max([int(c["segment"]) for c in cards] + [1]))  # a segment may have no card
    table = cards_table(cards) if cards else None
    boxes = []
    for card in cards:
        s = int(card["segment"])
        row = table.loc[s]
        facts = "".join(f"<div>{e(k)}: <b class='seglib-card-{k.replace(' ', '-')}'>"
                        f"{e(str(row[k]))}</b></div>"
                        for k in ("share of revenue", "revenue per customer", "value index", "stability"))
        behaviours = "".join(f"<li>{e(b['text'])}</li>" for b in card["behaviours"])
        boxes.append(
            f"<div class='seglib-card' data-segment='{s}' title='{e(card['description'])}' "
            f"style='border-left:8px solid {colors[s - 1]};padding:6px 10px;margin:4px;width:300px;"
            "background:#fafafa;border-radius:4px'>"
            f"<div><b>S{s} {e(str(card['name']))}</b></div>"
            f"<div class='seglib-card-customers'>{int(card['customers']):,} customers "
            f"({card['customer_share']:.1%})</div>{facts}"
            + (f"<ul style='margin:2px 0;padding-left:1.1em'>{behaviours}</ul>" if behaviours else "")
            + f"<div class='seglib-card-action'>Suggested action: <b>{e(card['action']['action'])}</b> "
            f"({e(card['action']['rule'])})</div></div>")
    return ("<div class='seglib-cards' data-n='%d' style='display:flex;flex-wrap:wrap'>%s</div>"
            % (len(cards), "".join(boxes)))


# ---------------------------------------------------------------------------------------- the app


@dataclass
class Opened:
    """The segmentation shown: its run folder, the trained map and clustering, its parameters."""

    run_dir: Path
    source: str  # what the page calls it (a file name or the run's name)
    cluster: object  # seglib.steps.ClusterStep
    parameters: dict  # registry name -> value


class App:
    """The dashboard: open a run or a new file, segment, explore the cut, download.

    Parameters
    ----------
    run_dir : path, optional
        Run folder to open at start (a ``seglib run`` / ``seglib segment`` folder). Default: the
        latest run (``reports/latest``) when there is one; else the page starts with the upload.
    data : path, optional
        A transactions file to offer for segmenting at start (as if uploaded), e.g. from
        ``seglib app --data FILE``. It is read, never changed.
    max_upload_mb : float, default=DEFAULT_MAX_UPLOAD_MB
        Largest upload accepted. Raise it for larger logs on a machine with the memory (about 10x
        the file's size); beyond a few hundred MB prefer ``seglib segment``.
    workdir : path, optional
        Private folder for uploads and the app's runs; default: a new temporary folder (mode 0700),
        removed by :meth:`close` or when the process ends (Voila ends a page's kernel with the page).
    progress : bool, default=True
        Show the SOM's training bar (tqdm) under the step bar while segmenting.
    """

    def __init__(self, run_dir=None, data=None, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
                 workdir=None, progress: bool = True):
        if not (isinstance(max_upload_mb, (int, float)) and max_upload_mb > 0):
            raise ParameterError(f"max_upload_mb={max_upload_mb!r} is not valid: "
                                 "expected a positive number of MB")
        self.max_upload_mb = float(max_upload_mb)
        self.progress = progress
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="seglib-app-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        if self._own_workdir:  # a page's kernel ends when the page closes: its uploads and runs go too
            atexit.register(shutil.rmtree, self.workdir, ignore_errors=True)
        self._n_files = self._n_runs = 0
        self.data_path: Path | None = None  # the file to segment (in workdir, or --data)
        self.data_name: str | None = None
        self.opened: Opened | None = None
        self.explorer = None
        self.downloads: dict[str, Path] = {}
        self.shown_cards: list[dict] = []  # the cards of the cut shown (seglib.summary.segment_cards)
        self._cut_shown = None
        self._measured: list[tuple[np.ndarray, pd.DataFrame]] = []  # (segment per customer, stability)

        # ---- widgets
        self.error = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.status = widgets.HTML()
        self.run_list = widgets.Dropdown(description="run", style={"description_width": "120px"},
                                         layout=widgets.Layout(width="360px"))
        self.open_button = widgets.Button(description="Open", icon="folder-open")
        self.open_button.on_click(self.on_open_run)
        self.list_runs()
        self.upload = upload_widget()
        self.upload.observe(self.on_upload, names="value")
        self.file_label = widgets.HTML("No file chosen yet.")
        self.roles: dict[str, widgets.Dropdown] = {}
        self.roles_box = widgets.VBox()
        self.bases = bases_widget()
        self.segment_button = widgets.Button(description="Segment", button_style="primary", disabled=True,
                                             icon="play")
        self.segment_button.on_click(self.on_segment)
        self.bar = widgets.IntProgress(value=0, min=0, max=len(STEP_LABELS), description="",
                                       layout=widgets.Layout(width="360px", visibility="hidden"))
        self.bar_label = widgets.HTML()
        self.train_output = widgets.Output()
        self.explorer_box = widgets.VBox()
        self.cards = widgets.HTML()
        self.heatmap = widgets.Output()
        self.download_button = widgets.Button(description="Prepare downloads", icon="download", disabled=True)
        self.download_button.on_click(self.on_prepare_downloads)
        self.download_links = widgets.HTML()
        new_file = widgets.VBox([
            widgets.HTML("<h3>Segment a new file</h3><p>Upload a transactions file (CSV, .csv.gz or "
                         f"Parquet, at most {self.max_upload_mb:g} MB), check which column plays which role "
                         "(seglib's guess is filled in; * = required), then press Segment.</p>"),
            self.upload, self.file_label, self.roles_box,
            *([self.bases] if self.bases is not None else []),
            widgets.HBox([self.segment_button, self.bar, self.bar_label]), self.train_output,
        ])
        self.box = widgets.VBox([
            self.error, self.status,
            widgets.HTML("<h3>Open a run</h3><p>A run made with <code>seglib run</code> or "
                         "<code>seglib segment</code> on this machine (newest first).</p>"),
            widgets.HBox([self.run_list, self.open_button]), new_file,
            widgets.HTML("<h3>Explore the cut</h3><p>Move either slider: the number of segments and the "
                         "cut height <code>max_d</code> follow each other; the cards and the profile follow "
                         "both.</p>"),
            self.explorer_box, widgets.HTML("<h3>Segments</h3>"), self.cards, self.heatmap,
            widgets.HTML("<h3>Download</h3><p><code>parameters.yaml</code> reproduces this segmentation: "
                         "<code>seglib run --data YOUR_FILE --params-file parameters.yaml</code>.</p>"),
            widgets.HBox([self.download_button]), self.download_links,
        ])

        # ---- what to show first: a start that fails (a bad --run or --data) still shows the page
        try:
            if data is not None:
                self.use_file(resolve(data), Path(data).name)
            start = resolve(run_dir) if run_dir is not None else latest_run()
            if start is not None:
                self.open_run(start)
        except SeglibError as exc:
            self.show_error(exc)
        if self.opened is None:
            self.status.value = "<p>No segmentation to show yet: upload a file and press Segment.</p>"

    @classmethod
    def from_environment(cls, **kwargs) -> "App":
        """The app as ``seglib app`` configured it (its options come through the environment)."""
        env = os.environ
        options = {"run_dir": env.get(ENV_RUN) or None, "data": env.get(ENV_DATA) or None}
        if env.get(ENV_MAX_UPLOAD):
            options["max_upload_mb"] = float(env[ENV_MAX_UPLOAD])
        return cls(**{**options, **kwargs})

    # ---- errors -------------------------------------------------------------------------------

    def show_error(self, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else _one_line(exc)
        # a banner at the bottom of the window: seen wherever the page is scrolled to
        self.error.value = ("<div class='seglib-error' style='position:fixed;left:0;right:0;bottom:0;"
                            "z-index:1000;padding:8px 16px;background:#fdecea;color:#b00020;"
                            f"font-weight:bold'>{html.escape(text)}</div>")

    @property
    def error_text(self) -> str:
        """The error line the page shows ('' when none)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.error.value))

    # ---- a new file ---------------------------------------------------------------------------

    @_guarded
    def on_upload(self, change) -> None:
        """Handler of the upload widget: store the file privately, guess its roles."""
        files = change["new"]
        if not files:
            return
        f = files[0]
        try:
            self.receive_upload(f["name"], bytes(f["content"]))
        finally:
            self.upload.value = ()  # the bytes are on disk (or refused): drop the widget's copy

    def receive_upload(self, name: str, content: bytes) -> Path:
        """Store an uploaded file in the private folder (a name of the app's choosing) and offer it."""
        suffix = check_upload(name, len(content), self.max_upload_mb)
        self._n_files += 1
        folder = self.workdir / "uploads"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"upload-{self._n_files}{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        self.use_file(path, Path(str(name)).name)
        return path

    def use_file(self, path: Path, name: str) -> None:
        """Offer ``path`` for segmenting: read its header, fill the role drop-downs with the guess."""
        from seglib.load import guess_columns, read_header

        path = Path(path)
        if not path.is_file():
            raise InputError(f"input data {path} not found")
        header = read_header(path)
        if not header:
            raise InputError(f"{name}: no column names found; expected a CSV, .csv.gz or Parquet file "
                             "with a header line")
        self.roles = role_dropdowns(header, guess_columns(header))
        self.roles_box.children = list(self.roles.values())
        self.data_path, self.data_name = path, name
        self.file_label.value = (f"<p><b>{html.escape(name)}</b>: {len(header)} columns. "
                                 "Check the roles below.</p>")
        self.segment_button.disabled = False

    def columns(self) -> dict:
        """The role mapping the drop-downs show (``columns`` parameter): every role, None = not used."""
        from seglib.load import REQUIRED_ROLES

        mapping = {}
        for role, dd in self.roles.items():
            if dd.value in (None, NONE):
                if role in REQUIRED_ROLES:
                    raise InputError(f"{self.data_name}: choose the column of the required role {role!r}")
                mapping[role] = None
            else:
                mapping[role] = dd.value
        used = [c for c in mapping.values() if c is not None]
        twice = sorted({c for c in used if used.count(c) > 1})
        if twice:
            raise InputError(f"{self.data_name}: column(s) {', '.join(map(repr, twice))} "
                             "chosen for two roles")
        return mapping

    def new_parameters(self) -> dict:
        """Parameters of a new segmentation: defaults, the role mapping and the bases chosen."""
        values = params.defaults()
        values["columns"] = self.columns()
        if self.bases is not None:
            values["bases"] = self.bases.value
        return values

    @_guarded
    def on_segment(self, _button=None) -> None:
        """Handler of the Segment button."""
        self.segment()

    def segment(self) -> Path:
        """Segment the offered file with :func:`seglib.pipeline.segment` into the private folder; show it."""
        from seglib import pipeline

        if self.data_path is None:
            raise InputError("no file to segment: upload one first")
        values = self.new_parameters()
        given = {k: v for k, v in values.items() if k in _segment_parameters()}
        self._n_runs += 1
        out = self.workdir / "runs" / f"run-{self._n_runs}"
        self.segment_button.disabled = True
        self.bar.value, self.bar.layout.visibility = 0, "visible"
        self.train_output.outputs = ()
        try:
            with self.train_output:
                result = pipeline.segment(self.data_path, out=out, parameters=given, progress=self.progress,
                                          on_step=self._on_step)
            self.bar.value = self.bar.max
            self.bar_label.value = "Done."
        finally:
            self.segment_button.disabled = False
        self.open_run(result.run_dir, source=self.data_name, parameters=values)
        return result.run_dir

    def _on_step(self, name: str) -> None:
        steps = list(STEP_LABELS)
        self.bar.value = steps.index(name) if name in steps else 0
        self.bar_label.value = f"{STEP_LABELS.get(name, name)}&hellip;"

    # ---- a run --------------------------------------------------------------------------------

    def list_runs(self) -> None:
        """Fill the run list with the saved runs (the page offers folders; it never takes a typed path)."""
        runs = saved_runs()
        self.run_list.options = [(p.name, p) for p in runs]
        self.run_list.disabled = self.open_button.disabled = not runs
        if not runs:
            self.run_list.options = [("(no saved run)", None)]

    @_guarded
    def on_open_run(self, _button=None) -> None:
        """Handler of the Open button: show the run chosen in the list."""
        if self.run_list.value is not None:
            self.open_run(self.run_list.value)

    def open_run(self, run_dir, *, source: str | None = None, parameters: dict | None = None) -> None:
        """Show the segmentation of a run folder: dendrogram and map with the sliders, cards, profile."""
        from seglib import steps
        from seglib.widgets import ClusterExplorer

        run_dir = Path(run_dir)
        if not _has_segments(run_dir):
            raise InputError(_no_segments(run_dir))
        cluster = steps.load_clusters(run_dir)
        values = parameters if parameters is not None else run_parameters(run_dir)
        self.opened = Opened(run_dir=run_dir, source=source or run_dir.name, cluster=cluster,
                             parameters=values)
        som = cluster.som_step.som
        self.explorer = ClusterExplorer.from_clustering(cluster.clustering, som.weights_, cluster.hits,
                                                        k_max=max(int(values.get("k_max") or 15), 2),
                                                        kept_segments=cluster.unit_segments)
        self.explorer.k_slider.observe(self.on_cut_change, names="value")
        self.explorer.d_slider.observe(self.on_cut_change, names="value")
        self.explorer_box.children = [self.explorer.box]
        self.status.value = (f"<p>Showing <b>{html.escape(self.opened.source)}</b>: "
                             f"{len(cluster.segments):,} customers.</p>")
        self._cut_shown = None
        # the cuts whose stability was measured: the kept one (step 03 of the run), then every exported one
        self._measured = [(cluster.segments["segment"].to_numpy(), cluster.stability_table())]
        self.refresh()

    @property
    def n_clusters(self) -> int:
        return int(self.explorer.n_clusters)

    def labels(self) -> pd.Series:
        """Segment of every customer under the current cut (index: customer key): at the kept number of
        segments the run's own segments, else those the cut would give, as a download makes them
        (consolidated unit by unit, then customer by customer when the run's ``assign`` says so)."""
        from seglib.cluster import refine_units

        cluster = self.opened.cluster
        seg = cluster.segments
        kept = self.explorer.kept_segments
        if kept is not None and self.explorer.unit_labels is kept:
            return seg["segment"].rename("segment")  # the kept cut: every customer's own segment
        unit_labels = np.asarray(self.explorer.unit_labels)
        if cluster.segment_means is not None:  # the run assigned customer by customer
            X = cluster.som_step.X.reindex(seg.index).to_numpy()
            labels, _, _ = refine_units(X, unit_labels, cluster.clustering)
            return pd.Series(labels, index=seg.index, name="segment")
        return pd.Series(unit_labels[seg["bmu"].to_numpy()], index=seg.index, name="segment")

    @_guarded
    def on_cut_change(self, change=None) -> None:
        """Observer of both sliders (after the explorer's own): cards and profile follow the cut."""
        self.refresh()

    def refresh(self) -> None:
        """Redraw the cards and the heat map when the cut changed; old download links are dropped."""
        if self.explorer is None or self._cut_shown == self.n_clusters:
            return
        from seglib.plots import plot_profile_heatmap
        from seglib.profile import profile_segments

        customers = self.opened.cluster.som_step.customers
        labels = self.labels()
        self.shown_cards = self.segment_cards(labels)
        self.cards.value = cards_html(self.shown_cards)
        profile = profile_segments(customers, labels,
                                   money="monetary" if "monetary" in customers.columns else None)
        fig = Figure(figsize=(2.2 + 0.8 * len(profile), 6), layout="constrained")
        plot_profile_heatmap(profile, ax=fig.subplots(), annotate=len(profile) <= 15)
        _show_png(self.heatmap, fig, f"<profile of {len(profile)} segments>")
        self._cut_shown = self.n_clusters
        self.downloads = {}
        self.download_links.value = ""
        self.download_button.disabled = False

    def measured_stability(self, labels) -> pd.DataFrame | None:
        """The per-segment stability measured for exactly this cut (``labels``), else None.

        Step 03 of the opened run measured the kept segments; each download measures its cut (the
        ``n_stability_runs`` of the run). A cut moved with the sliders and not downloaded yet was not
        measured: its cards say "not measured" rather than show another cut's verdicts.
        """
        labels = np.asarray(labels)
        for measured, table in reversed(self._measured):
            if len(measured) == len(labels) and np.array_equal(measured, labels):
                return table
        return None

    def segment_cards(self, labels=None) -> list[dict]:
        """The summary cards of a cut (default: the current one), as ``summary.html`` holds them.

        :func:`seglib.summary.segment_cards` on the map's customer table, with the run's currency and
        descriptors, and the stability measured for this cut (:meth:`measured_stability`).
        """
        from seglib.features import descriptor_columns
        from seglib.summary import segment_cards

        som_step = self.opened.cluster.som_step
        labels = self.labels() if labels is None else labels
        descriptors = descriptor_columns(som_step.customers.columns, som_step.feature_names,
                                         som_step.pipeline["features"].dropped_)
        return segment_cards(som_step.customers, labels, stability=self.measured_stability(labels),
                             currency=self.opened.parameters.get("currency"), descriptors=descriptors)

    # ---- downloads ----------------------------------------------------------------------------

    def parameters(self) -> dict:
        """Every run parameter of what the page shows, the cut included, as ``seglib run`` takes them.

        The cut is written as ``n_clusters`` (``max_d: null``): the count the sliders show gives the
        same segments as the distance (and breaks a tie of merge heights the same way).
        """
        return params.effective({**self.opened.parameters, "n_clusters": self.n_clusters, "max_d": None})

    def parameters_yaml(self) -> str:
        head = (f"# seglib parameters of the segmentation of {self.opened.source} shown in seglib app\n"
                f"# ({self.n_clusters} segments). Reproduce it with:\n"
                "#   seglib run --data YOUR_FILE --params-file parameters.yaml\n")
        return head + yaml.safe_dump(self.parameters(), sort_keys=False, default_flow_style=None)

    @_guarded
    def on_prepare_downloads(self, _button=None) -> None:
        """Handler of 'Prepare downloads'."""
        self.prepare_downloads()

    def prepare_downloads(self) -> dict[str, Path]:
        """Write the current cut's files with the pipeline's steps; show them as download links.

        ``result.csv`` and ``segments.csv`` come from :func:`seglib.steps.cluster_step` and
        :func:`seglib.steps.profile_step` on the trained map with the current cut, in a new folder of
        the private workspace; ``summary.html`` and ``parameters.yaml`` go beside them.
        """
        if self.opened is None:
            raise InputError("nothing to download yet: segment a file first")
        self.download_links.value = "<i>Writing the files&hellip;</i>"
        try:
            return self._write_downloads()
        except Exception:
            self.download_links.value = ""
            raise

    def _write_downloads(self) -> dict[str, Path]:
        from seglib import steps

        self._n_runs += 1
        out = self.workdir / "exports" / f"export-{self._n_runs}"
        layout = Layout.for_run(out).makedirs()
        source = Layout.for_run(self.opened.run_dir)
        for path in (source.cleaning_report, source.metrics):  # the model's settings and role mapping
            if path.is_file():
                shutil.copyfile(path, out / path.relative_to(self.opened.run_dir))
        values = {**params.defaults(), **self.opened.parameters}
        cluster = steps.cluster_step(self.opened.cluster.som_step, method=values["method"],
                                     hit_weighting=values["hit_weighting"],
                                     connectivity=values["connectivity"], n_clusters=self.n_clusters,
                                     max_d=None, consolidate=values["consolidate"],
                                     assign=values["assign"], n_stability_runs=values["n_stability_runs"],
                                     stability_sample=values["stability_sample"],
                                     seed=values["seed"],
                                     out_dir=out)
        self._measured.append((cluster.segments["segment"].to_numpy(), cluster.stability_table()))
        profile = steps.profile_step(cluster, out_dir=out, currency=values["currency"])
        # the page now shows what summary.html holds: this cut's stability is measured
        self.shown_cards = profile.cards
        self.cards.value = cards_html(self.shown_cards)
        (out / "parameters.yaml").write_text(self.parameters_yaml(), encoding="utf-8")
        self.downloads = {"result.csv": layout.result, "segments.csv": layout.segments_csv,
                          "summary.html": out / "summary.html", "parameters.yaml": out / "parameters.yaml"}
        mimes = {".csv": "text/csv", ".html": "text/html", ".yaml": "application/x-yaml"}
        links = "".join(_download_link(name, path.read_bytes(), mimes[path.suffix])
                        for name, path in self.downloads.items())
        self.download_links.value = f"<p>{self.n_clusters} segments: {links}</p>"
        return self.downloads

    # ---- display and clean-up ------------------------------------------------------------------

    def display(self):
        from IPython.display import display

        display(self.box)

    def _ipython_display_(self):
        self.display()

    def close(self) -> None:
        """Remove the private folder (when the app made it)."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def dashboard(**kwargs) -> App:
    """The app as ``seglib app`` configured it: what the dashboard notebook calls."""
    return App.from_environment(**kwargs)


# ---------------------------------------------------------------------------------------- serving


def voila_argv(notebook, *, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, no_browser: bool = False
               ) -> list[str]:
    """Command-line arguments of the Voila server that serves the dashboard notebook.

    Tracebacks stay hidden (``show_tracebacks`` off); the port is the one asked for or an error
    (no silent move to another port).
    """
    argv = [str(notebook), f"--port={int(port)}", f"--Voila.ip={host}", "--Voila.port_retries=0",
            "--show_tracebacks=False", "--theme=light"]
    if no_browser:
        argv.append("--no-browser")
    return argv


def serve(*, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, no_browser: bool = False, data=None,
          run_dir=None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
    """Serve the dashboard with Voila until interrupted (``seglib app``).

    ``data`` and ``run_dir`` reach the dashboard's kernel through the environment. The websocket
    accepts messages of up to four times the upload limit, so a file a little over the limit gets a
    readable refusal in the page rather than a dropped connection.
    """
    from seglib.pipeline import APP_NOTEBOOK

    if not (isinstance(max_upload_mb, (int, float)) and max_upload_mb > 0):
        raise ParameterError(f"max_upload_mb={max_upload_mb!r} is not valid: "
                             "expected a positive number of MB")
    for value, what in ((data, "data file"), (run_dir, "run folder")):
        if value is not None and not resolve(value).exists():
            raise InputError(f"{what} {resolve(value)} not found")
    if run_dir is not None and not _has_segments(resolve(run_dir)):
        raise InputError(_no_segments(resolve(run_dir)))
    try:
        from traitlets.config import Config
        from voila.app import Voila
    except ImportError as exc:
        raise InputError(f"seglib app needs Voila ({exc}): pip install 'seglib[app]' (or make app)") from None
    os.environ[ENV_MAX_UPLOAD] = repr(float(max_upload_mb))
    os.environ[ENV_DATA] = str(resolve(data)) if data is not None else ""
    os.environ[ENV_RUN] = str(resolve(run_dir)) if run_dir is not None else ""
    config = Config()
    config.Voila.tornado_settings = {"websocket_max_message_size": int(max_upload_mb * 4e6) + (1 << 20)}
    where = ("this machine only (127.0.0.1); use --host to listen on a network address"
             if host == DEFAULT_HOST
             else f"the network: every machine that reaches {host} can use it; there is no login")
    print(f"seglib app: serving on http://{host}:{port}/ to {where}. Stop with Ctrl-C.", flush=True)
    voila = Voila(config=config)
    voila.initialize(voila_argv(APP_NOTEBOOK, port=port, host=host, no_browser=no_browser))
    voila.start()
