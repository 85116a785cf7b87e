"""Verification of NOWPayments IPN signatures (``x-nowpayments-sig``).

Owns the canonical form NOWPayments signs: the body's JSON object with keys sorted recursively,
serialised as JavaScript's ``JSON.stringify`` does, then hex HMAC-SHA512 with the IPN secret.
The form is defined by what JavaScript prints (verification samples for it are Node code), so we
reproduce JavaScript exactly rather than trusting how the body happened to be spelled on the wire:

* numbers go through an IEEE double (what ``JSON.parse`` does) and are printed with ECMAScript
  ``Number::toString`` rules: ``15.0`` -> ``15``, ``5e-05`` -> ``0.00005``, ``1e-7`` stays
  ``1e-7``, integers beyond 2**53 lose their low digits as they would in JavaScript;
* strings escape only ``"``, ``\\``, control characters and lone surrogates; non-ASCII text and
  ``/`` stay raw (Python's ``json.dumps`` would print ``\\u041f`` and ``5e-05`` and break the
  signature on every Cyrillic description or small amount);
* keys sort by UTF-16 code units (``Array.prototype.sort``), and integer-like keys come first in
  numeric order because that is how JavaScript objects enumerate them.

Unconfirmed: arrays. The usual sample ``sortObject`` turns arrays into objects by accident
(``typeof [] === "object"``); real IPN bodies carry none, so arrays are kept as arrays here.
The parsed body is returned only after the signature checks out, with every number as a
``Decimal`` (never a float) holding exactly the value that was signed.
"""

import hashlib
import hmac
import json
import math
import re
from decimal import Decimal
from typing import Any

from telepay.security.errors import (
    BadSignature,
    MalformedBody,
    MalformedSignature,
    MissingSignature,
)

SIGNATURE_HEADER = "x-nowpayments-sig"

# Real IPN bodies nest two levels (``fee``); the bound keeps hostile input from exhausting the
# stack in the parser or in our serialiser.
_MAX_DEPTH = 32
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{128}")
# What JSON.stringify escapes (QuoteJSONString, ES2019): in a Python str from json.loads a valid
# surrogate pair is already one astral character, so any surrogate code point left is a lone one.
_NEEDS_ESCAPE_RE = re.compile('["\\\\\x00-\x1f\ud800-\udfff]')
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
# ECMAScript "array index": a canonical non-negative integer string below 2**32 - 1.
_ARRAY_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_ARRAY_INDEX = 2**32 - 2


def js_number(value: float) -> str:
    """Return ``String(value)`` as JavaScript prints a finite double (Number::toString)."""
    if not math.isfinite(value):
        raise ValueError("JSON has no spelling for NaN or Infinity")
    if value == 0:
        return "0"  # -0 included, as in JavaScript
    if value < 0:
        return "-" + js_number(-value)
    spelled = repr(value)
    if "e" not in spelled:
        # The common case, 1e-4 <= value < 1e16: repr() is already JavaScript's spelling, but
        # for a whole number's ".0". Outside that range the layouts differ; worked out below.
        return spelled[:-2] if spelled.endswith(".0") else spelled
    # repr() gives the shortest digits that round-trip, ties broken towards the closer value:
    # the same digits ECMAScript asks for ("k as small as possible"). Only the layout differs.
    _, digit_tuple, exponent = Decimal(spelled).as_tuple()
    assert isinstance(exponent, int)  # finite: only numbers that parsed as JSON numbers come here
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    # value = digits * 10**exponent; in the spec's terms k = len(digits), n = exponent + k.
    k = len(digits)
    n = exponent + k
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _quote(text: str) -> str:
    return '"' + _NEEDS_ESCAPE_RE.sub(_escape, text) + '"'


def _utf16_units(key: str) -> bytes:
    # Big-endian UTF-16 compares bytewise exactly as JavaScript compares code units.
    return key.encode("utf-16-be", "surrogatepass")


def _is_array_index(key: str) -> bool:
    return _ARRAY_INDEX_RE.fullmatch(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def _plain_key(key: str) -> bool:
    # Such keys sort the same by code point as by UTF-16 unit, and none is an array index.
    return key.isascii() and not key[:1].isdigit()


def _js_key_order(keys: list[str]) -> list[str]:
    if all(_plain_key(key) for key in keys):
        return sorted(keys)  # plain names, as IPNs have: code points and UTF-16 units agree
    ordered = sorted(keys, key=_utf16_units)
    indices = sorted((key for key in ordered if _is_array_index(key)), key=int)
    return indices + [key for key in ordered if not _is_array_index(key)]


def _number(literal: str) -> Decimal:
    value = float(literal)  # correctly rounded, like JSON.parse
    if not math.isfinite(value):
        # A JavaScript sender cannot produce this literal: it would have printed null.
        raise MalformedBody("number out of range")
    return Decimal(js_number(value))


def _reject_constant(name: str) -> None:
    raise MalformedBody(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # Parsers disagree on which duplicate wins; a genuine IPN never has one, so refuse.
        raise MalformedBody("duplicate key")
    return result


_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than we ever accept.

    Checked before json.loads: its C scanner recurses once per level, and when the process's
    recursion limit has been raised (some libraries do), a body of 64 KiB of "[" would overflow
    the C stack and kill the process instead of raising RecursionError.
    """
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return False  # the usual IPN: nothing to scan
    depth = 0
    for char in _STRING_RE.sub("", text):
        if char in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _parse(raw: bytes) -> dict[str, Any]:
    return _parse_noting_keys(raw)[0]


def _parse_noting_keys(raw: bytes) -> tuple[dict[str, Any], str, bool]:
    """The body, its text, and whether every key in it is plain (`_plain_key`)."""
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("body is not UTF-8") from None
    if _too_deep(text):
        raise MalformedBody("body is nested too deeply")
    plain = [True]

    def object_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if plain[0] and not all(_plain_key(key) for key, _ in pairs):
            plain[0] = False
        return _object(pairs)

    try:
        body = json.loads(
            text,
            parse_float=_number,
            parse_int=_number,
            parse_constant=_reject_constant,
            object_pairs_hook=object_hook,
        )
    except (ValueError, RecursionError):
        # JSONDecodeError is a ValueError; its message quotes the body, so it is not passed on.
        raise MalformedBody("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedBody("body is not a JSON object")
    return body, text, plain[0]


def _dump(value: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedBody("body is nested too deeply")
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(_js_key_order(list(value))):
            if i:
                out.append(",")
            out.append(_quote(key))
            out.append(":")
            _dump(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:
        # Only Decimals from _number get here; they hold a double's shortest digits exactly.
        out.append(js_number(float(value)))


def _serialise(body: dict[str, Any]) -> bytes:
    out: list[str] = []
    _dump(body, out, 1)
    return "".join(out).encode("utf-8")


# The fast path's number markers: the C encoder writes each number as the JSON string
# "\u0000<JavaScript spelling>\u0001", and two plain replacements unwrap them. A body whose text
# has an escaped U+0000 or U+0001 anywhere never takes this path, so no string of its own can
# hold a marker's ends (JSON cannot carry those characters unescaped).
_OPEN, _CLOSE = '"\\u0000', '\\u0001"'


def _marked_number(value: Any) -> str:
    if isinstance(value, Decimal):
        # Every number here was made by `_number` from its JavaScript spelling, which a Decimal
        # prints back unchanged but for an upper-case exponent ("1E-7"): no float round trip.
        return "\x00" + str(value).lower() + "\x01"
    raise TypeError(f"{type(value).__name__} is not JSON")


_FAST_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                                 default=_marked_number)


def _serialise_fast(body: dict[str, Any], text: str, plain_keys: bool) -> bytes | None:
    """`_serialise(body)` by the C JSON encoder, or None where the two could differ.

    Python's encoder with `ensure_ascii=False` escapes strings exactly as JSON.stringify does
    (`"`, `\\`, control characters; \b \f \n \r \t short), except lone surrogates, which it
    leaves raw and which then fail to encode as UTF-8. Its key order is JavaScript's only for
    plain keys. Numbers go through the markers, spelled as `_number` made them. This is three times
    faster than `_serialise` on an IPN, and `tests/security/test_nowpayments.py` checks the two
    agree on random bodies; `verify_ipn` still falls back to `_serialise` on a mismatch.
    """
    if not plain_keys or "\\u0000" in text or "\\u0001" in text:
        return None
    try:
        dumped = _FAST_ENCODER.encode(body)
        return dumped.replace(_OPEN, "").replace(_CLOSE, "").encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError):
        return None


def canonical_body(raw: bytes) -> bytes:
    """Return the bytes NOWPayments signs for the JSON object in ``raw``; raise MalformedBody."""
    return _serialise(_parse(raw))


def _key(secret: bytes | str) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("NOWPayments IPN secret is empty")
    return key


def nowpayments_signature(secret: bytes | str, raw: bytes) -> str:
    """Return the hex ``x-nowpayments-sig`` for ``raw`` (used by the sandbox and by tests)."""
    return hmac.new(_key(secret), canonical_body(raw), hashlib.sha512).hexdigest()


def verify_ipn(secret: bytes | str, raw: bytes, header: str | None) -> dict[str, Any]:
    """Verify an IPN and return its body (numbers as ``Decimal``); raise a ``SignatureError``."""
    key = _key(secret)
    if not header or not header.strip(" \t"):
        raise MissingSignature("x-nowpayments-sig header is missing")
    text = header.strip(" \t")
    if not _SIGNATURE_RE.fullmatch(text):
        raise MalformedSignature("x-nowpayments-sig must be 128 hex digits")
    body, body_text, plain_keys = _parse_noting_keys(raw)
    given = bytes.fromhex(text)
    fast = _serialise_fast(body, body_text, plain_keys)
    if fast is not None and hmac.compare_digest(hmac.new(key, fast, hashlib.sha512).digest(), given):
        return body
    # The fast path declined, or its bytes did not match: the reference serialiser decides, so
    # a fast-path mistake can cost time but never refuse a genuine IPN.
    if not hmac.compare_digest(hmac.new(key, _serialise(body), hashlib.sha512).digest(), given):
        raise BadSignature("signature does not match")
    return body
