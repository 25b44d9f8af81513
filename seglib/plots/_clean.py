"""Plots of what the cleaning step found: ages, spend and transactions, one value per customer.

Segments are sets of customers, so each plot counts customers, not lines: a customer with five
lines is one age, one total spend and one number of transactions.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from seglib.errors import InputError, check_int

__all__ = ["plot_age_distribution", "plot_spend_distribution", "plot_transactions_per_customer"]

#: Columns that identify one transaction (a basket), when the table has them.
TRANSACTION_KEYS = ("date", "store", "till", "transaction")


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    return ax


def _require(clean_df, columns, what: str) -> None:
    if not isinstance(clean_df, pd.DataFrame):
        raise InputError(
            f"{what}: expected the cleaned transactions DataFrame, got {type(clean_df).__name__}"
        )
    missing = [c for c in columns if c not in clean_df.columns]
    if missing:
        raise InputError(
            f"{what}: the cleaned table has no column {', '.join(map(repr, missing))}; "
            "pass the output of seglib.clean.clean_transactions"
        )


def _note(ax, text: str):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    return ax


def plot_age_distribution(clean_df: pd.DataFrame, *, ax=None, **kwargs) -> plt.Axes:
    """Histogram of customer ages (whole years at ``as_of``), one bar per year.

    Each customer counts once (their first known age). Customers with no age (no DOB, ``NANA``,
    or outside the plausible range) are left out and counted in the title. ``kwargs`` go to
    :meth:`matplotlib.axes.Axes.hist`.
    """
    _require(clean_df, ["customer_key"], "plot_age_distribution")
    ax = _axes(ax)
    if "age" not in clean_df.columns:
        return _note(ax, "no ages: the data has no date-of-birth column")
    ages = clean_df.groupby("customer_key", sort=True)["age"].first()
    known = ages.dropna().to_numpy()
    unknown = len(ages) - len(known)
    as_of = clean_df.attrs.get("as_of")
    at = f" at {as_of}" if as_of else ""
    ax.set_title(f"Age of {len(known):,} customers{at}\n({unknown:,} unknown)", fontsize="medium")
    ax.set_xlabel("age (years)")
    ax.set_ylabel("customers")
    if len(known) == 0:
        return _note(ax, "no known age")
    bins = np.arange(np.floor(known.min()), np.ceil(known.max()) + 2) - 0.5
    kwargs.setdefault("bins", bins)
    kwargs.setdefault("color", "C0")
    ax.hist(known, **kwargs)
    return ax


def plot_spend_distribution(clean_df: pd.DataFrame, *, ax=None, log: bool = True, **kwargs) -> plt.Axes:
    """Histogram of each customer's total spend on sale lines (zero-price lines and returns excluded).

    Parameters
    ----------
    log : bool, default True
        Log-spaced bins on a log axis. Spend is heavy-tailed (a few customers spend 100 times the
        median), so a linear axis shows one bar; use False for narrow ranges.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.hist`.

    Customers with no sale line (only zero-price lines or returns) have no spend here and are
    counted in the title, as are the zero-price and return lines.
    """
    _require(clean_df, ["customer_key", "amount", "line_type"], "plot_spend_distribution")
    ax = _axes(ax)
    sales = clean_df["line_type"] == "sale"
    spend = clean_df.loc[sales].groupby("customer_key", sort=True)["amount"].sum()
    n_customers = clean_df["customer_key"].nunique()
    counts = clean_df["line_type"].value_counts()
    ax.set_title(
        f"Spend of {len(spend):,} customers on sale lines\n"
        f"({n_customers - len(spend):,} without; {int(counts.get('zero', 0)):,} zero-price, "
        f"{int(counts.get('return', 0)):,} return lines left out)",
        fontsize="medium",
    )
    ax.set_xlabel("total spend per customer")
    ax.set_ylabel("customers")
    values = spend.to_numpy(dtype=float)
    if len(values) == 0:
        return _note(ax, "no sale line")
    if log:
        lo, hi = values.min(), values.max()
        kwargs.setdefault("bins", np.geomspace(lo, hi if hi > lo else lo * 10, 40))
        ax.set_xscale("log")
    else:
        kwargs.setdefault("bins", 40)
    kwargs.setdefault("color", "C0")
    ax.hist(values, **kwargs)
    return ax


def plot_transactions_per_customer(
    clean_df: pd.DataFrame, *, ax=None, max_count: int = 10, **kwargs
) -> plt.Axes:
    """Bar chart: how many customers made 1, 2, ... transactions (``max_count`` and more pooled).

    A transaction is a distinct (date, store, till, transaction number) among the columns the table
    has; with none of store / till / transaction it is a distinct (customer, date). Many single
    transactions mean frequency will be a weak feature. ``kwargs`` go to
    :meth:`matplotlib.axes.Axes.bar`.
    """
    _require(clean_df, ["customer_key", "date"], "plot_transactions_per_customer")
    check_int("max_count", max_count, minimum=2)
    ax = _axes(ax)
    keys = ["customer_key"] + [c for c in TRANSACTION_KEYS if c in clean_df.columns]
    per_customer = clean_df[keys].drop_duplicates().groupby("customer_key", sort=True).size()
    clipped = np.minimum(per_customer.to_numpy(), max_count)
    x = np.arange(1, max_count + 1)
    heights = np.bincount(clipped, minlength=max_count + 1)[1:]
    kwargs.setdefault("color", "C0")
    ax.bar(x, heights, **kwargs)
    ax.set_xticks(x, [str(i) for i in x[:-1]] + [f"{max_count}+"])
    ax.set_xlabel("transactions per customer")
    ax.set_ylabel("customers")
    single = heights[0] / heights.sum() if heights.sum() else 0.0
    ax.set_title(f"Transactions of {heights.sum():,} customers\n({single:.0%} with one)", fontsize="medium")
    return ax
