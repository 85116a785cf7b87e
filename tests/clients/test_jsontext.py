"""JSON number text written from Decimals, in each provider's spelling."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from telepay.clients.jsontext import dumps, number_text
from telepay.security.nowpayments import js_number


@pytest.mark.parametrize("value, decimal, js, python", [
    ("15", "15.0", "15", "15.0"),
    ("15.50", "15.5", "15.5", "15.5"),
    ("0.00005", "0.00005", "0.00005", "5e-05"),
    ("0.0001", "0.0001", "0.0001", "0.0001"),
    ("0.0000001", "0.0000001", "1e-7", "1e-07"),
    ("-2.5", "-2.5", "-2.5", "-2.5"),
    ("0", "0.0", "0", "0.0"),
    ("1E+21", "1000000000000000000000.0", "1e+21", "1e+21"),
])
def test_spellings(value, decimal, js, python):
    number = Decimal(value)
    assert (number_text(number, "decimal"), number_text(number, "js"), number_text(number, "python")) == (
        decimal, js, python)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-999_999, max_value=999_999))
def test_js_spelling_is_what_javascript_prints(value):
    # Up to 15 significant digits a double holds the value exactly enough for both to agree.
    assert number_text(value, "js") == js_number(float(value))
    assert number_text(value, "python") == repr(float(value))


def test_dumps_keeps_order_and_raw_text_and_refuses_floats():
    assert dumps({"b": Decimal("0.00005"), "a": "Клуб", "n": 7, "x": None, "t": True}) == \
        '{"b":0.00005,"a":"Клуб","n":7,"x":null,"t":true}'
    with pytest.raises(TypeError):
        dumps({"amount": 0.1})
