"""Every run parameter, defined once: name, type, default, allowed values, one-line help.

The notebooks' ``parameters`` cells, ``seglib run``, ``seglib segment``, the Dask backend, the saved
model's settings and the README's parameter table all come from (or are tested against)
:data:`PARAMETERS`. A value is checked by :func:`check_parameter` before any work starts: a wrong one
raises :class:`seglib.errors.ParameterError` naming the parameter, the value and what is expected.

Every parameter is valid in both commands, ``seglib run`` (the notebooks) and ``seglib segment``
(no notebooks, in memory or on Dask): one parameters file serves both. A parameter marked
``figures_only`` shapes only what the notebooks show (the k-selection figures of
notebook 03); ``seglib segment``, which draws no figures, accepts it, checks it and records it in
``run.json``; it never changes ``result.csv`` or ``segments.csv``.

To add a parameter:

1. add one :class:`Param` to :data:`PARAMETERS` in its step's section (the step that first reads it);
2. use it in that step's ``*_step`` signature (:mod:`seglib.steps`) with ``default("name")``, and in
   :func:`seglib.runner.run_segmentation` / :func:`seglib.runner.run_dask` (their keyword
   parameters are the registry's names: ``tests/test_params.py`` checks it);
3. declare it in the ``parameters`` cell of the notebook of its step, with the registry's default
   (``name: type = default  # help``), and pass it to the step there;
4. regenerate the README table: ``python -m seglib.params --update-readme``.

The tests (checking every value through both commands, the notebooks' cells and the README table)
derive from :data:`PARAMETERS`, so a new parameter is covered without new tests.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from seglib.errors import ParameterError, check_bool, check_float, check_int

__all__ = ["Param", "PARAMETERS", "STEPS", "by_name", "check_parameter", "check_parameters", "default",
           "defaults", "describe", "effective", "names", "parameters_table", "update_readme"]

#: The steps, in pipeline order; each parameter belongs to the step that first reads it.
STEPS = ("clean", "som", "cluster", "profile", "track")

#: Kinds of value, and how each is described in an error message.
KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "date": "a date YYYY-MM-DD",
    "mapping": "a mapping of name: value",
    "shape": "a list of two integers [rows, columns]",
    "list": "a list of names",
}


@dataclass(frozen=True)
class Param:
    """One run parameter.

    Attributes
    ----------
    name : str
        The name used everywhere (notebooks, ``-p NAME VALUE``, params files, ``run.json``).
    kind : str
        One of :data:`KINDS`.
    default
        The default value (``None`` where the help says what ``None`` means).
    help : str
        One line: what it does and how to choose a value.
    step : str
        The step that first reads it (one of :data:`STEPS`).
    choices : tuple, optional
        Allowed values (for ``str`` parameters, or special words such as ``"auto"``).
    minimum, maximum : number, optional
        Inclusive bounds of numeric values.
    above : number, optional
        Exclusive lower bound (``above=0``: strictly positive).
    nullable : bool
        ``None`` (``null`` in YAML) is allowed.
    figures_only : bool
        Shapes only notebook figures (no effect on the segments); ``seglib segment`` records it only.
    """

    name: str
    kind: str
    default: object
    help: str
    step: str
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    above: float | None = None
    figures_only: bool = False
    extra: dict = field(default_factory=dict)

    def expected(self) -> str:
        """What a valid value is, in words (used by error messages and ``--list-parameters``)."""
        parts = []
        if self.kind == "str" and self.choices:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        else:
            what = KINDS[self.kind]
            low, high = _number(self.minimum), _number(self.maximum)
            if self.minimum is not None and self.maximum is not None:
                what += f" in [{low}, {high}]"
            elif self.minimum is not None:
                what += f" >= {low}"
            elif self.maximum is not None:
                what += f" <= {high}"
            if self.above is not None:
                what += f" > {_number(self.above)}"
            parts.append(what)
            if self.choices:
                parts.append(" or ".join(repr(c) for c in self.choices))
        if self.nullable:
            parts.append("null")
        return " or ".join(parts)

    def check(self, value):
        """Return ``value`` checked (and normalised: ``"8"`` stays an error, ``8.0`` -> ``8`` for ints)."""
        if value is None:
            if self.nullable:
                return None
            self._fail(value)
        if self.choices and isinstance(value, str) and value in self.choices:
            return value
        kind = self.kind
        if kind in ("bool", "int", "float"):
            if kind == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)  # YAML's 8.0 is the integer 8
            check = {"bool": check_bool, "int": check_int, "float": check_float}[kind]
            bounds = {} if kind == "bool" else {"minimum": self.minimum, "maximum": self.maximum}
            try:
                value = check(self.name, value, **bounds)
            except ParameterError:
                self._fail(value)  # the registry's wording: what a valid value is, in words
            if self.above is not None and value <= self.above:
                self._fail(value)
            return value
        if kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                self._fail(value)
            return value
        if kind == "date":
            if isinstance(value, (_dt.date, _dt.datetime)):
                return value.isoformat()[:10]
            if isinstance(value, str):
                try:
                    return _dt.date.fromisoformat(value.strip()[:10]).isoformat()
                except ValueError:
                    pass
            self._fail(value)
        if kind == "mapping":
            if isinstance(value, dict) and all(isinstance(k, str) for k in value):
                return dict(value)
            self._fail(value)
        if kind == "shape":
            if (isinstance(value, (list, tuple)) and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
                return [int(v) for v in value]
            self._fail(value)
        if kind == "list":
            if isinstance(value, str):
                return [value] if not self.choices or value in self.choices else self._fail(value)
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            self._fail(value)
        raise AssertionError(f"unknown kind {kind!r} of parameter {self.name!r}")  # pragma: no cover

    def _fail(self, value):
        raise ParameterError(f"parameter {self.name}={value!r} is not valid: expected {self.expected()}")


def _number(value) -> str:
    return str(value) if value is None or isinstance(value, int) else f"{value:g}"


# The parameters, by step. Keep each section in the order a user meets them.
PARAMETERS: tuple[Param, ...] = (
    # ---- clean (notebook 01)
    Param("columns", "mapping", None,
          "your column per role, e.g. {customer_id: cust, date: order_date, amount: revenue}; "
          "None: the original schema", "clean", nullable=True),
    Param("date_format", "str", None,
          "strftime format of the transaction dates; None: detected from the values", "clean", nullable=True),
    Param("dob_format", "str", None,
          "strftime format of the dates of birth; None: detected from the values", "clean", nullable=True),
    Param("as_of", "date", None,
          "reference date (YYYY-MM-DD) for ages and recency; None: the day after the last transaction",
          "clean", nullable=True),
    Param("min_age", "int", 15, "ages below this become unknown", "clean", minimum=0, maximum=150),
    Param("max_age", "int", 99, "ages above this become unknown", "clean", minimum=0, maximum=150),
    Param("min_date", "date", None,
          "earliest plausible transaction date; None: derived (the stretch of dates without a gap over a "
          "year holding the most rows)", "clean", nullable=True),
    Param("max_date", "date", None,
          "latest plausible transaction date; None: derived like min_date", "clean", nullable=True),
    Param("max_amount", "float", None,
          "largest plausible absolute line amount; None: a million times the order of magnitude of the "
          "median amount", "clean", above=0, maximum=1e15, nullable=True),
    # ---- som (notebook 02)
    Param("scaler", "str", "standard", "feature scaling: standard (default), minmax or robust", "som",
          choices=("standard", "minmax", "robust")),
    Param("map_shape", "shape", [15, 15],
          "rows, columns of the map; None: about 5*sqrt(customers) units", "som", nullable=True),
    Param("engine", "str", "batch",
          "SOM engine: batch (fast, default), minisom, or original (the original analysis's MiniSom setting)",
          "som", choices=("batch", "minisom", "original")),
    Param("n_epochs", "int", 10, "passes over the customers", "som", minimum=1),
    Param("sigma", "float", None, "starting neighbourhood radius; None: half the map's longer side", "som",
          above=0, nullable=True),
    Param("sigma_end", "float", 1.0, "neighbourhood radius of the last epoch", "som", above=0),
    Param("seed", "int", 0, "random seed (SOM and everything downstream)", "som", minimum=0,
          maximum=2**32 - 1),
    Param("topology", "str", "rectangular",
          "grid of the map: rectangular (square cells, default) or hexagonal (six equidistant neighbours, "
          "maps read as regions)", "som", choices=("rectangular", "hexagonal")),
    # bases and descriptors (issue 13)
    Param("bases", "list", "behaviour",
          "features that form the segments: behaviour (default: all but age and gender, which only describe "
          "the segments), all, or a list of feature names", "som", choices=("behaviour", "all")),
    Param("feature_weights", "mapping", None,
          "extra weight per feature after scaling, e.g. {monetary: 2}; None: every feature weighs 1",
          "som", nullable=True),
    # ---- cluster (notebook 03)
    Param("method", "str", "ward",
          "linkage of the prototypes: ward (default, hit-weighted), average (the original's), complete, "
          "single, weighted, centroid, median", "cluster",
          choices=("ward", "average", "complete", "single", "weighted", "centroid", "median")),
    Param("n_clusters", "int", "auto",
          "number of segments; auto: chosen within k_min..k_max by fit and stability (docs/clustering.md); "
          "ignored when max_d is given", "cluster", choices=("auto",), minimum=1, nullable=True),
    Param("max_d", "float", None, "cut height read off the dendrogram; None: cut by n_clusters", "cluster",
          minimum=0, nullable=True),
    Param("hit_weighting", "bool", "auto",
          "weigh prototypes by their customers in the linkage: auto (ward only), true or false", "cluster",
          choices=("auto",)),
    Param("connectivity", "bool", False, "True: every segment is a contiguous region of the map", "cluster"),
    Param("consolidate", "bool", True,
          "consolidate the cut by k-means iterations on the customers (segments as compact and reproducible "
          "as k-means', still whole map units); false: the plain cut of the tree", "cluster"),
    Param("assign", "str", "customer",
          "with consolidate: continue the k-means customer by customer from the consolidated segments "
          "(customer; a unit's customers may then fall in several segments, the map shows each unit's "
          "majority) or keep whole map units (unit)", "cluster", choices=("customer", "unit")),
    Param("k_min", "int", 3, "smallest number of segments n_clusters=auto may choose (and the figures show)",
          "cluster", minimum=2),
    Param("k_max", "int", 10, "largest number of segments n_clusters=auto may choose (and the figures show)",
          "cluster", minimum=2),
    Param("n_stability_runs", "int", 5,
          "resamples for the stability check of the kept segments (verdicts in segments.csv); 0: skip it",
          "cluster", minimum=0),
    Param("stability_sample", "int", 20000,
          "customers drawn (with replacement) per stability resample, at most: all of them up to this "
          "many; fewer make the check faster on large data and, if anything, stricter", "cluster",
          minimum=100),
    # ---- profile (notebook 04)
    Param("currency", "str", None,
          "symbol or code written before amounts in the summary and profile tables (EUR, $, INR); "
          "None: amounts without a currency", "profile", nullable=True),
    # ---- track (notebook 05: segments over time; seglib track, and seglib run/segment --track)
    Param("model_dir", "str", None,
          "saved segmentation to track with (a run folder or its model/); None: the project's (built with "
          "defaults when missing), or the one trained on the first train_periods periods", "track",
          nullable=True),
    Param("period", "str", "quarter",
          "length of a period: month, quarter (default: segments move slowly) or year", "track",
          choices=("month", "quarter", "year")),
    Param("window", "int", 1,
          "periods of history behind each period's features (1: that period alone; more smooths "
          "customers who skip a period)", "track", minimum=1),
    Param("train_periods", "int", None,
          "train a new segmentation on the first N periods and track the rest; None: use the saved one",
          "track", minimum=1, nullable=True),
    Param("retrain_novel_share", "float", 0.05,
          "recommend retraining when more than this share of a period's customers is novel "
          "(5x the 1% expected)", "track", minimum=0, maximum=1),
    Param("retrain_error_ratio", "float", 1.25,
          "recommend retraining when a period's quantization error exceeds training's by this factor",
          "track", minimum=1),
)

_BY_NAME = {p.name: p for p in PARAMETERS}
assert len(_BY_NAME) == len(PARAMETERS), "a parameter is defined twice"


def names() -> list[str]:
    """Every parameter name, in pipeline order."""
    return [p.name for p in PARAMETERS]


def by_name(name: str) -> Param:
    """The :class:`Param` called ``name``; an unknown name lists the valid ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(names())}") from None


def default(name: str):
    """The default value of ``name`` (a fresh copy for lists and mappings)."""
    value = by_name(name).default
    return list(value) if isinstance(value, list) else (dict(value) if isinstance(value, dict) else value)


def defaults(step: str | None = None) -> dict:
    """``{name: default}`` of every parameter, or of one step's."""
    return {p.name: default(p.name) for p in PARAMETERS if step is None or p.step == step}


def check_parameter(name: str, value):
    """Check one value; return it normalised. Raises :class:`ParameterError` (one line) when invalid."""
    return by_name(name).check(value)


def check_parameters(values: dict) -> dict:
    """Check every ``name: value``; return the normalised mapping."""
    return {name: check_parameter(name, value) for name, value in values.items()}


def effective(values: dict | None = None) -> dict:
    """Every parameter's value for a run: ``values`` checked, the registry's defaults for the rest.

    This is what ``run.json`` records under ``parameters``. Raises :class:`ParameterError` (one line)
    on an unknown name or an invalid value.
    """
    checked = check_parameters(values or {})
    out = {p.name: checked[p.name] if p.name in checked else default(p.name) for p in PARAMETERS}
    _check_together(out)
    return out


def _check_together(values: dict) -> None:
    """Rules across parameters (each value alone is valid)."""
    if values.get("min_age") is not None and values.get("max_age") is not None \
            and values["min_age"] > values["max_age"]:
        raise ParameterError(f"parameters min_age={values['min_age']!r} > max_age={values['max_age']!r}: "
                             "expected min_age <= max_age")


def as_yaml(value) -> str:
    """A value as written in a parameters file or after ``-p NAME``: ``null``, ``true``, ``[15, 15]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(as_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {as_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe() -> str:
    """The parameters as text, by step (what ``seglib run|segment --list-parameters`` prints)."""
    lines = []
    for step in STEPS:
        params = [p for p in PARAMETERS if p.step == step]
        if not params:
            continue
        lines.append(f"{step}:")
        for p in params:
            note = " [notebook figures only]" if p.figures_only else ""
            lines.append(f"  {p.name} = {as_yaml(p.default)}  ({p.expected()}){note}")
            lines.append(f"      {p.help}")
    return "\n".join(lines)


def parameters_table() -> str:
    """The parameters as a Markdown table (the README's table is tested against it)."""
    lines = ["| parameter | step | default | expected | what it does |", "|---|---|---|---|---|"]
    for p in PARAMETERS:
        note = " (notebook figures only: `seglib segment` records it)" if p.figures_only else ""
        lines.append(f"| `{p.name}` | {p.step} | `{as_yaml(p.default)}` | {p.expected()} | {p.help}{note} |")
    return "\n".join(lines)


#: The README's generated table sits between these two lines.
README_MARKERS = ("<!-- parameters:start (generated: python -m seglib.params --update-readme) -->",
                  "<!-- parameters:end -->")


def readme_with_table(text: str) -> str:
    """``text`` (a README) with the part between :data:`README_MARKERS` replaced by the table."""
    start, end = README_MARKERS
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"the README needs one {start!r} line followed by one {end!r} line")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{parameters_table()}\n{end}{tail}"


def update_readme(path=None) -> bool:
    """Rewrite the README's parameter table from the registry; returns True when it changed."""
    from pathlib import Path

    from seglib.config import PROJECT_ROOT

    path = Path(path) if path is not None else PROJECT_ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    new = readme_with_table(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m seglib.params [--update-readme]
    import sys

    if sys.argv[1:] == ["--update-readme"]:
        print("README.md updated" if update_readme() else "README.md is current")
    else:
        print(describe())
