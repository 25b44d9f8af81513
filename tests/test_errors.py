"""The shared validators of seglib.errors: clear one-line messages naming the parameter and the value."""

from __future__ import annotations

import numpy as np
import pytest

from seglib.errors import ParameterError, check_bool, check_float, check_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_check_int_accepts_integers_in_range(value):
    out = check_int("n", value, minimum=1, maximum=10)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, 11, 2.0, 1.5, True, "3", None, float("nan")])
def test_check_int_refuses_the_rest_naming_the_parameter_and_the_value(value):
    with pytest.raises(ParameterError) as info:
        check_int("n_things", value, minimum=1, maximum=10)
    message = str(info.value)
    assert message.startswith(f"n_things={value!r} ") and "an integer from 1 to 10" in message
    assert len(message.splitlines()) == 1


def test_check_int_none_when_allowed():
    assert check_int("n", None, minimum=1, allow_none=True) is None
    with pytest.raises(ParameterError, match=r"an integer >= 1 or None"):
        check_int("n", 0, minimum=1, allow_none=True)


@pytest.mark.parametrize("value, expected", [(1, 1.0), (0.5, 0.5), (np.float32(2.5), 2.5),
                                             (np.int64(4), 4.0)])
def test_check_float_accepts_numbers(value, expected):
    out = check_float("x", value, minimum=0)
    assert out == expected and type(out) is float


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "1.5", None, [1.0]])
def test_check_float_refuses_the_rest(value):
    with pytest.raises(ParameterError, match=r"^x=.* is not valid; expected a finite number >= 0$"):
        check_float("x", value, minimum=0)


def test_check_bool():
    assert check_bool("flag", True) is True and check_bool("flag", np.bool_(False)) is False
    for value in (1, 0, "false", None):
        with pytest.raises(ParameterError, match=r"flag=.* expected True or False"):
            check_bool("flag", value)
