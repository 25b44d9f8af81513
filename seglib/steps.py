"""The steps as the notebooks run them: read upstream artifacts, compute, write artifacts.

Each notebook calls one ``*_step`` function for the work that produces its artifacts, then shows
and explains the result. The ``load_*`` functions read a step's artifacts and, when they are
missing, run that step (and its upstream steps) with default parameters first, so every notebook
runs on its own on a fresh clone: a user who opens notebook 03 first gets the cleaned data and the
SOM built for them, by the same functions notebooks 01 and 02 call.

Where the artifacts go is a :class:`seglib.config.Layout`: the project's ``data/`` and ``reports/``
folders by default (``out_dir=None``), or a batch run's folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seglib._files import atomic_path, write_json
from seglib.config import DEFAULT_CUSTOMERS, DEFAULT_DATA, DEFAULT_DATA_SEED, Layout, resolve

logger = logging.getLogger(__name__)

__all__ = ["default_data", "clean_step", "load_clean", "record_metrics", "save_figure"]


# ---------------------------------------------------------------------------------------- helpers


def default_data(data_path: str | os.PathLike | None = None) -> Path:
    """The input file: ``data_path`` resolved against the project root, or the bundled default data.

    The default data set (``data/raw/transactions.csv``, about 3,000 synthetic customers with
    planted segments) is generated when missing; a user's file is never generated or changed.
    """
    if data_path is not None:
        return resolve(data_path)
    if not DEFAULT_DATA.is_file():
        from seglib.synthetic import write_dataset

        logger.info("generating the default data set %s", DEFAULT_DATA)
        write_dataset(DEFAULT_DATA, n_customers=DEFAULT_CUSTOMERS, random_state=DEFAULT_DATA_SEED)
    return DEFAULT_DATA


def record_metrics(layout: Layout, **values) -> dict:
    """Merge ``values`` into the run's ``metrics.json`` (read by the batch runner for ``run.json``)."""
    path = layout.metrics
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(values)
    write_json(path, data)
    return data


def save_figure(fig, layout: Layout, name: str, *, dpi: int = 110) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` (atomically) and return the path."""
    layout.figures.mkdir(parents=True, exist_ok=True)
    path = layout.figures / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None})
    return path


def _write_parquet(df: pd.DataFrame, path: Path, *, index: bool = False) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=index)
    return path


# ---------------------------------------------------------------------------------------- step 01


@dataclass
class CleanStep:
    """What step 01 produced."""

    raw: pd.DataFrame
    clean: pd.DataFrame
    report: object  # seglib.clean.CleaningReport
    layout: Layout


def clean_step(
    data_path: str | os.PathLike | None = None,
    *,
    columns: dict | None = None,
    date_format: str | None = None,
    dob_format: str | None = None,
    as_of=None,
    min_age: float = 15,
    max_age: float = 99,
    out_dir: str | os.PathLike | None = None,
) -> CleanStep:
    """Load and clean ``data_path``; write the cleaned table and ``cleaning_report.json``.

    Parameters are those of :func:`seglib.load.load_transactions` and
    :func:`seglib.clean.clean_transactions`; ``out_dir`` selects the :class:`Layout`.
    """
    from seglib.clean import clean_transactions
    from seglib.load import DEFAULT_COLUMNS, load_transactions

    layout = Layout.for_run(out_dir).makedirs()
    path = default_data(data_path)
    raw = load_transactions(path, columns=columns, date_format=date_format, dob_format=dob_format)
    clean, report = clean_transactions(raw, as_of=as_of, min_age=min_age, max_age=max_age)
    mapping = raw.attrs.get("columns") or {}
    clean.attrs["id_column"] = mapping.get("customer_id", DEFAULT_COLUMNS["customer_id"])
    clean.attrs["source"] = str(path)
    _write_parquet(clean, layout.clean_transactions)
    report.to_json(layout.cleaning_report)
    record_metrics(layout, rows_read=report.rows_read, rows_kept=report.rows_kept,
                   customers_kept=report.customers_kept, as_of=str(report.as_of))
    logger.info("cleaned %s: %d of %d rows kept", path, report.rows_kept, report.rows_read)
    return CleanStep(raw=raw, clean=clean, report=report, layout=layout)


def load_clean(out_dir: str | os.PathLike | None = None):
    """The cleaned transactions and their report; runs :func:`clean_step` with defaults if missing."""
    from seglib.clean import CleaningReport

    layout = Layout.for_run(out_dir)
    if not (layout.clean_transactions.is_file() and layout.cleaning_report.is_file()):
        logger.info("no cleaned data in %s: running the cleaning step with default parameters",
                    layout.interim)
        step = clean_step(out_dir=out_dir)
        return step.clean, step.report
    clean = pd.read_parquet(layout.clean_transactions)
    return clean, CleaningReport.from_json(layout.cleaning_report)
