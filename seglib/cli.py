"""The ``seglib`` command line.

Subcommands::

    seglib make-data --out PATH [--customers N] [--segments K] [--seed S]

Errors a user can cause (a missing file, a bad parameter) print one line and exit with status 2;
no traceback. Only this module configures logging.
"""

from __future__ import annotations

import argparse
import logging
import sys

from seglib.config import DEFAULT_CUSTOMERS, DEFAULT_DATA_SEED
from seglib.errors import SeglibError

logger = logging.getLogger(__name__)

EXIT_USAGE = 2


def _cmd_make_data(args: argparse.Namespace) -> int:
    from seglib.synthetic import write_dataset

    paths = write_dataset(
        args.out, n_customers=args.customers, n_segments=args.segments, random_state=args.seed
    )
    for p in paths:
        print(p)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seglib",
        description="Customer segmentation of retail transactions with self-organizing maps.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("make-data", help="generate synthetic transactions with planted segments")
    p.add_argument("--out", required=True, help="CSV file to write (a _truth.csv is written beside)")
    p.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="number of customers")
    p.add_argument("--segments", type=int, default=6, help="number of planted segments")
    p.add_argument("--seed", type=int, default=DEFAULT_DATA_SEED, help="random seed")
    p.set_defaults(func=_cmd_make_data)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


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
