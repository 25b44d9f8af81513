"""The ``seglib`` command line.

Subcommands::

    seglib make-data --out PATH [--customers N] [--segments K] [--seed S] [--periods P --migration RATE]
    seglib run [--data PATH] [--out DIR] [-p NAME VALUE ...] [--params-file FILE] [--list-parameters]
    seglib score --model RUN_DIR --data PATH --out FILE [--as-of DATE]
    seglib track --data FILE [--model RUN_DIR | --train-periods N] [--period month|quarter|year]
                 [--window PERIODS] [--out DIR] [--backend pandas|dask] [-p NAME VALUE ...] [--params-file F]
    seglib segment --data PATH|GLOB|DIR [--out DIR] [--backend pandas|dask] [--scheduler ADDR] [-p ...]
                   [--list-parameters]
    seglib app [--port 8866] [--host ADDR] [--no-browser] [--data FILE] [--run RUN_DIR] [--max-upload-mb MB]

``run`` and ``segment`` take the same parameters (:mod:`seglib.params`), checked before any work.

Paths on the command line are relative to the working directory.

Errors a user can cause (a missing file, a bad parameter) print one line and exit with status 2;
no traceback. Only this module configures logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from seglib.config import APP_HOST, APP_MAX_UPLOAD_MB, APP_PORT, DEFAULT_CUSTOMERS, DEFAULT_DATA_SEED
from seglib.errors import SeglibError

logger = logging.getLogger(__name__)

EXIT_USAGE = 2


def _cmd_make_data(args: argparse.Namespace) -> int:
    from seglib.synthetic import write_dataset

    paths = write_dataset(
        args.out, n_customers=args.customers, n_segments=args.segments, random_state=args.seed,
        periods=args.periods, migration=args.migration,
    )
    for p in paths:
        print(p)
    return 0


def _list_parameters() -> int:
    from seglib import params

    print(params.describe())
    print("(set with -p NAME VALUE or a --params-file; the input and the run folder with --data and --out)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from seglib import pipeline

    if args.list_parameters:
        return _list_parameters()
    parameters = {name: pipeline.parse_value(value) for name, value in (args.parameter or [])}
    result = pipeline.run(
        data=_abs(args.data), out=_abs(args.out), parameters=parameters, params_file=args.params_file,
        progress=not args.no_progress, html=not args.no_html, track=args.track,
    )
    summary = result.run_dir / "summary.html"
    print(f"run folder {result.run_dir}" + (f"; open {summary}" if summary.is_file() else ""))
    return 0


def _abs(path: str | None) -> str | None:
    """A command-line path, relative to the working directory (the library resolves against the root)."""
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def _cmd_segment(args: argparse.Namespace) -> int:
    from seglib import pipeline

    if args.list_parameters:
        return _list_parameters()
    parameters = {name: pipeline.parse_value(value) for name, value in (args.parameter or [])}
    options = {k: v for k, v in (("scheduler", args.scheduler), ("n_workers", args.workers),
                                 ("memory_limit", args.memory_limit)) if v is not None}
    data = args.data
    if data is not None and not any(c in data for c in "*?["):
        data = _abs(data)
    result = pipeline.segment(data, out=_abs(args.out), parameters=parameters, params_file=args.params_file,
                              backend=args.backend, progress=not args.no_progress, track=args.track,
                              **options)
    print(result.run_dir)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from seglib.segmentation import score_file

    scored = score_file(args.model, args.data, args.out, as_of=args.as_of)
    novel = int(scored["novel"].sum())
    print(f"{args.out}: {len(scored):,} customers scored, {novel:,} unlike any segment")
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from seglib import app

    app.serve(port=args.port, host=args.host, no_browser=args.no_browser, data=_abs(args.data),
              run_dir=_abs(args.run), max_upload_mb=args.max_upload_mb)
    return 0


def _cmd_track(args: argparse.Namespace) -> int:
    from seglib import pipeline

    parameters = {name: pipeline.parse_value(value) for name, value in (args.parameter or [])}
    for name in ("period", "window", "train_periods"):
        if getattr(args, name) is not None:
            parameters[name] = getattr(args, name)
    options = {k: v for k, v in (("scheduler", args.scheduler), ("n_workers", args.workers)) if v is not None}
    tracking = pipeline.track(_abs(args.data), _abs(args.out), model=_abs(args.model), parameters=parameters,
                              params_file=args.params_file, backend=args.backend,
                              progress=not args.no_progress, **options)
    retrain = tracking.drift.loc[tracking.drift["retrain"], "period"].tolist()
    print(f"{tracking.out_dir}: {len(tracking.periods)} {tracking.period}s tracked"
          + (f"; retrain recommended from {retrain[0]}" if retrain else "; no drift past the thresholds"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seglib",
        description="Customer segmentation of retail transactions with self-organizing maps.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show the log (-v: what each step does, -vv: debug); default: warnings only")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("make-data", help="generate synthetic transactions with planted segments")
    p.add_argument("--out", required=True, help="CSV file to write (a _truth.csv is written beside)")
    p.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="number of customers")
    p.add_argument("--segments", type=int, default=6, help="number of planted segments")
    p.add_argument("--seed", type=int, default=DEFAULT_DATA_SEED, help="random seed")
    p.add_argument("--periods", type=int, help="spread the log over this many quarters (1-8, up to 2017Q2), "
                   "with customers moving between segments; the truth then has one row per quarter")
    p.add_argument("--migration", type=float, default=0.1,
                   help="with --periods: share of customers that change segment between quarters "
                        "(default 0.1)")
    p.set_defaults(func=_cmd_make_data)

    p = sub.add_parser("run", help="run the four notebooks with papermill into a new run folder")
    p.add_argument("--data", help="transactions file (CSV, .csv.gz or Parquet); default: the bundled data")
    p.add_argument("--out", help="run folder (new or empty); default: reports/runs/<timestamp>/")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter (YAML value: 8, 1.5, null, [15, 10]); repeatable; "
                        "see --list-parameters")
    p.add_argument("--params-file", help="YAML file of parameters (-p values override it)")
    p.add_argument("--list-parameters", action="store_true",
                   help="list the parameters (the same for run and segment) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-html", action="store_true", help="skip report.html")
    p.add_argument("--track", action="store_true",
                   help="also run notebook 05 (segments over time) into <run>/tracking/")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("segment", help="the whole pipeline without notebooks, in memory or on Dask")
    p.add_argument("--data", help="a file, a folder or a glob of CSV / Parquet parts (required, or "
                                   "data_path in the parameters file)")
    p.add_argument("--out", help="run folder (new or empty); default: reports/runs/<timestamp>/")
    p.add_argument("--backend", default="pandas", help="pandas (default, one file in memory) or dask")
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786); default: a local cluster")
    p.add_argument("--workers", type=int, help="workers of the local Dask cluster (default: one per core)")
    p.add_argument("--memory-limit", help="memory per local Dask worker, e.g. 4GB")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a parameter, as for seglib run (YAML value: 8, 1.5, null, [15, 10]); repeatable")
    p.add_argument("--params-file", help="YAML file of parameters (-p values override it)")
    p.add_argument("--list-parameters", action="store_true",
                   help="list the parameters (the same for run and segment) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--track", action="store_true",
                   help="then track the segments over time (one file) into <run>/tracking/")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("score", help="score customers with a saved segmentation (a run's model/)")
    p.add_argument("--model", required=True, help="run folder (holding model/) or the model folder")
    p.add_argument("--data", required=True, help="transactions file (CSV, .csv.gz or Parquet)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--as-of", dest="as_of",
                   help="reference date YYYY-MM-DD for recency and age; "
                        "default: the day after the last transaction")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("app", help="serve the explorer (a web page) for people who do not run notebooks")
    p.add_argument("--port", type=int, default=APP_PORT, help=f"port (default {APP_PORT})")
    p.add_argument("--host", default=APP_HOST,
                   help=f"address to listen on (default {APP_HOST}: this machine only; "
                        "0.0.0.0 shares the app, without a login, with the network)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--data", help="a transactions file to offer for segmenting at start")
    p.add_argument("--run", help="run folder to open (default: the latest run, reports/latest)")
    p.add_argument("--max-upload-mb", type=float, default=APP_MAX_UPLOAD_MB,
                   help=f"largest upload accepted, in MB (default {APP_MAX_UPLOAD_MB:g})")
    p.set_defaults(func=_cmd_app)

    p = sub.add_parser("track", help="segments over time: score every period, transitions, sizes, drift")
    p.add_argument("--data", required=True, help="transactions file (CSV, .csv.gz or Parquet)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--model", help="run folder (holding model/) or model folder: used as it is")
    how.add_argument("--train-periods", dest="train_periods", type=int,
                     help="train a segmentation on the first N periods (saved in DIR/model/), track the rest")
    p.add_argument("--period", help="month, quarter (default) or year")
    p.add_argument("--window", type=int, help="periods behind each period's features (default 1: that one)")
    p.add_argument("--out", help="folder to write (default: reports/tracking/)")
    p.add_argument("--backend", default="pandas", help="pandas (default) or dask: score periods in parallel")
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786); default: a local cluster")
    p.add_argument("--workers", type=int, help="workers of the local Dask cluster (default: one per core)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="retrain_novel_share, retrain_error_ratio; with --train-periods also map_shape, "
                        "n_clusters, method, seed, scaler, n_epochs, topology")
    p.add_argument("--params-file", help="YAML file of parameters (-p values override it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_track)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Warnings and errors by default; ``-v`` adds the steps' INFO lines (papermill's too), ``-vv`` DEBUG."""
    level = logging.WARNING if quiet or not verbose else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    # papermill logs every notebook's paths at INFO; nbconvert / traitlets likewise
    for name in ("papermill", "traitlets", "nbconvert"):
        logging.getLogger(name).setLevel(level)
    # Dask configures its own loggers at INFO: keep them to warnings unless asked for more
    logging.getLogger("distributed").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``seglib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except SeglibError as exc:
        print(f"seglib {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"seglib {args.command}: interrupted", file=sys.stderr)
        return 130
