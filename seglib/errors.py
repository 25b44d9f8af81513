"""Exceptions raised by seglib.

Every error a user can cause with their input or parameters is a :class:`SeglibError`, so a caller
(the CLI, a notebook, a scheduler) can tell "your file or setting is wrong" from a bug. The message
always names the file, column or parameter and what was expected.
"""

from __future__ import annotations

__all__ = ["SeglibError", "InputError", "ParameterError", "ModelFormatError", "PipelineError"]


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
