"""JSON text whose numbers are written from Decimals, digit for digit, never through a float.

Payment APIs want JSON *numbers* (`"fromAmount":0.00005`), and how a number is spelled on the
wire matters to anyone who signs or re-serialises the body. Python's `json` module can only
print a float, which both loses money digits and picks one spelling. Here every number is a
`Decimal` (a `float` is refused outright) and the caller picks the spelling (the clients send
"decimal"; the sandboxes answer in whichever style a test wants to meet):

* ``"decimal"``: positional, whole values with one decimal (``15.0``, ``0.00005``);
* ``"js"``: what JavaScript's ``JSON.stringify`` prints (``15``, ``0.00005``, ``1e-7``);
* ``"python"``: what Python's ``repr(float)`` prints (``15.0``, ``5e-05``).

Ints (ids) are always printed as integers. Strings keep non-ASCII text raw, as Node does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

STYLES = ("decimal", "js", "python")


def _digits(value: Decimal) -> tuple[str, int]:
    """Significant digits without trailing zeros and the exponent: value = digits * 10**exp."""
    _, digit_tuple, exponent = value.normalize().as_tuple()
    return "".join(map(str, digit_tuple)), int(exponent)


def _positional(digits: str, exponent: int) -> str:
    if exponent >= 0:
        return digits + "0" * exponent
    point = len(digits) + exponent
    if point > 0:
        return digits[:point] + "." + digits[point:]
    return "0." + "0" * -point + digits


def number_text(value: Decimal | int, style: str = "decimal") -> str:
    """Spell one number in the given style (see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"money is Decimal, not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise ValueError("JSON has no spelling for NaN or Infinity")
    if style not in STYLES:
        raise ValueError(f"unknown number style {style!r}")
    if value.is_zero():
        return "0" if style == "js" else "0.0"
    sign = "-" if value < 0 else ""
    digits, exponent = _digits(abs(value))
    k = len(digits)
    n = exponent + k  # position of the decimal point relative to the first digit
    if style == "decimal":
        text = _positional(digits, exponent)
        return sign + (text if "." in text else text + ".0")
    if style == "js":  # ECMAScript Number::toString layout
        if -6 < n <= 21:
            return sign + _positional(digits, exponent)
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        return f"{sign}{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    # Python's float repr: positional for 1e-4 <= |x| < 1e16, else d.ddde±XX.
    if -4 < n <= 16:
        text = _positional(digits, exponent)
        return sign + (text if "." in text else text + ".0")
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1):02d}"


def dumps(value: Any, style: str = "decimal") -> str:
    """Serialise compactly, keys in insertion order (as a provider's JSON.stringify would)."""
    out: list[str] = []
    _dump(value, style, out)
    return "".join(out)


def _dump(value: Any, style: str, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, (Decimal, int)):
        out.append(number_text(value, style))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append("," if i else "")
            out.append(json.dumps(str(key), ensure_ascii=False) + ":")
            _dump(item, style, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            _dump(item, style, out)
        out.append("]")
    else:
        raise TypeError(f"cannot put {type(value).__name__} in provider JSON")
