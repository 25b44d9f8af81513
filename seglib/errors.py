"""Exceptions raised by seglib.

Every error a user can cause with their input or parameters is a :class:`SeglibError`, so a caller
(the CLI, a notebook, a scheduler) can tell "your file or setting is wrong" from a bug. The message
always names the file, column or parameter and what was expected.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["SeglibError", "InputError", "ParameterError", "ModelFormatError", "PipelineError",
           "check_bool", "check_float", "check_int", "check_option"]


class SeglibError(Exception):
    """Base class of all errors seglib raises on purpose."""


class InputError(SeglibError, ValueError):
    """A data file cannot be used: missing, empty, unreadable, or lacking a required column."""


class ParameterError(SeglibError, ValueError):
    """A parameter has an unknown name or an invalid value."""


class ModelFormatError(SeglibError, ValueError):
    """Saved model files are missing, corrupted, tampered with, or of a newer format."""


class PipelineError(SeglibError, RuntimeError):
    """A notebook of a batch run failed."""


def check_option(name: str, value, valid) -> None:
    """Raise :class:`ParameterError` when ``value`` is not one of ``valid``.

    The message lists the valid options, MiniSom style: ``check_option("scaler", "zscore",
    ["standard", "minmax"])`` raises ``scaler='zscore' is not valid; choose one of: 'standard',
    'minmax'``.
    """
    valid = list(valid)
    if value not in valid:
        choices = ", ".join(repr(v) for v in valid)
        raise ParameterError(f"{name}={value!r} is not valid; choose one of: {choices}")


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""


def _check_number(name, value, convert, what: str, minimum, maximum, allow_none: bool):
    """``convert(value)`` when ``convert`` is given (the value has the right type) and the result lies
    within the inclusive bounds; None when ``allow_none``; else :class:`ParameterError` saying ``what``
    was expected."""
    if value is None and allow_none:
        return None
    ok = convert is not None
    if ok:
        value = convert(value)
        ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        expected = what + _bounds(minimum, maximum) + (" or None" if allow_none else "")
        raise ParameterError(f"{name}={value!r} is not valid; expected {expected}")
    return value


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              allow_none: bool = False) -> int | None:
    """Return ``value`` as an ``int``; raise :class:`ParameterError` unless it is an integer in range.

    ``True``/``False`` and floats (even ``2.0``) are refused: a count given as a float is usually a
    mistake. NumPy integers are accepted. ``check_int("n_epochs", 0, minimum=1)`` raises
    ``n_epochs=0 is not valid; expected an integer >= 1``.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value
        The value to check.
    minimum, maximum : int, optional
        Inclusive bounds.
    allow_none : bool, default False
        ``None`` is valid (and returned as is).
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return _check_number(name, value, int if ok else None, "an integer", minimum, maximum, allow_none)


def check_float(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                allow_none: bool = False) -> float | None:
    """Return ``value`` as a finite ``float``; raise :class:`ParameterError` unless it is a number in range.

    Integers are accepted (``1`` -> ``1.0``); booleans, strings, NaN and infinities are not.
    ``minimum`` / ``maximum`` are inclusive; ``allow_none`` makes ``None`` valid.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return _check_number(name, value, float if ok else None, "a finite number", minimum, maximum, allow_none)


def check_bool(name: str, value) -> bool:
    """Return ``value``; raise :class:`ParameterError` unless it is ``True`` or ``False``.

    Truthy stand-ins (``1``, ``"yes"``) are refused: they hide typos such as ``"false"``.
    NumPy booleans are accepted.
    """
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):  # numpy.bool_
        return bool(value)
    raise ParameterError(f"{name}={value!r} is not valid; expected True or False")
