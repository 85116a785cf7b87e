"""NOWPayments IPN verification: hand-written canonical vectors, rejections, properties.

Each expected canonical string below is written by hand from JavaScript's rules (and checked
against Node in test_nowpayments_node.py), never produced by the code under test.
"""

import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from telepay.security.errors import (
    BadSignature,
    MalformedBody,
    MalformedSignature,
    MissingSignature,
    SignatureError,
)
from telepay.security.nowpayments import (
    _number,
    _parse_noting_keys,
    _serialise,
    _serialise_fast,
    canonical_body,
    js_number,
    nowpayments_signature,
    verify_ipn,
)

SECRET = "ipn-secret-for-tests"

# As a sender might spell it: keys in any order, Python-style numbers, raw UTF-8.
IPN_RAW = (
    '{"payment_id":5077125051,"payment_status":"finished",'
    '"pay_address":"bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh","price_amount":15.0,'
    '"price_currency":"usd","pay_amount":0.00005,"actually_paid":1e-7,'
    '"actually_paid_at_fiat":0,"pay_currency":"btc","order_id":"inv_42",'
    '"order_description":"Подписка на канал ✓","purchase_id":"5837122679",'
    '"outcome_amount":12345678901234567890,"outcome_currency":"usdttrc20",'
    '"fee":{"withdrawalFee":0,"serviceFee":5e-05,"depositFee":0.0,"currency":"btc"},'
    '"parent_payment_id":null,"invoice_id":4522625843}'
).encode()
IPN_CANONICAL = (
    '{"actually_paid":1e-7,"actually_paid_at_fiat":0,'
    '"fee":{"currency":"btc","depositFee":0,"serviceFee":0.00005,"withdrawalFee":0},'
    '"invoice_id":4522625843,"order_description":"Подписка на канал ✓","order_id":"inv_42",'
    '"outcome_amount":12345678901234567000,"outcome_currency":"usdttrc20",'
    '"parent_payment_id":null,"pay_address":"bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh",'
    '"pay_amount":0.00005,"pay_currency":"btc","payment_id":5077125051,'
    '"payment_status":"finished","price_amount":15,"price_currency":"usd",'
    '"purchase_id":"5837122679"}'
).encode()

ESCAPES_RAW = (
    rb'{"order_id":"x","order_description":"Tab\there \"q\" back\\slash \/ slash \u00e9 '
    rb'\u2028 \u0001\u001F\u007f \ud83d\ude00 \udc00 \b\f\n\r \u0041"}'
)
# Kept escaped: quote, backslash, \t \b \f \n \r, other controls as lower-case \u00xx, lone
# surrogates. Raw: "/", e-acute, U+2028, DEL, the emoji (a valid pair), "A".
ESCAPES_CANONICAL = (
    '{"order_description":"Tab\\there \\"q\\" back\\\\slash / slash \u00e9 '
    "\u2028 \\u0001\\u001f\x7f \U0001f600 \\udc00 \\b\\f\\n\\r A"
    '","order_id":"x"}'
).encode()

KEYS_RAW = (
    '{"b":1,"B":2,"_":3,"10":4,"2":5,"a":6,"é":7,"😀":8,"\\uff01":9,"02":10,'
    '"4294967295":11,"4294967294":12}'
).encode()
# Integer-like keys first in numeric order (JavaScript object enumeration), then UTF-16 code
# unit order: the emoji (a surrogate pair, 0xD83D...) sorts before U+FF01, unlike code points.
KEYS_CANONICAL = (
    '{"2":5,"10":4,"4294967294":12,"02":10,"4294967295":11,"B":2,"_":3,"a":6,"b":1,'
    '"é":7,"😀":8,"！":9}'
).encode()

NUMBERS_RAW = (
    b'{"n":[1.0,-0,-0.0,1E2,1e21,123456789012345678901234,0.1,1e-6,1.5e-6,100e-2,2.5E-7,'
    b"9007199254740993,1e-400,0.000001234,-5e-05]}"
)
NUMBERS_CANONICAL = (
    b'{"n":[1,0,0,100,1e+21,1.2345678901234569e+23,0.1,0.000001,0.0000015,1,2.5e-7,'
    b"9007199254740992,0,0.000001234,-0.00005]}"
)

VECTORS = [
    pytest.param(IPN_RAW, IPN_CANONICAL, id="ipn"),
    pytest.param(ESCAPES_RAW, ESCAPES_CANONICAL, id="escapes"),
    pytest.param(KEYS_RAW, KEYS_CANONICAL, id="key-order"),
    pytest.param(NUMBERS_RAW, NUMBERS_CANONICAL, id="numbers"),
]


def expected_sig(canonical: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), canonical, hashlib.sha512).hexdigest()


@pytest.mark.parametrize(("raw", "canonical"), VECTORS)
def test_canonical_vectors(raw, canonical):
    assert canonical_body(raw) == canonical
    assert nowpayments_signature(SECRET, raw) == expected_sig(canonical)
    verify_ipn(SECRET, raw, expected_sig(canonical))


def test_other_spellings_of_the_same_ipn_verify():
    signature = expected_sig(IPN_CANONICAL)
    parsed = json.loads(IPN_RAW)
    python_style = json.dumps(parsed).encode()  # ", " and ": ", \u041f escapes
    pretty = json.dumps(parsed, indent=2, ensure_ascii=False).encode()
    for raw in (python_style, pretty, IPN_CANONICAL, b" \r\n" + IPN_RAW + b"\n"):
        assert canonical_body(raw) == IPN_CANONICAL
        verify_ipn(SECRET, raw, signature)


def test_returned_body_uses_decimal_for_every_number():
    body = verify_ipn(SECRET, IPN_RAW, expected_sig(IPN_CANONICAL))
    assert body["price_amount"] == Decimal("15")
    assert body["pay_amount"] == Decimal("0.00005")
    assert body["actually_paid"] == Decimal("1e-7")
    assert body["fee"]["serviceFee"] == Decimal("0.00005")
    assert body["payment_id"] == Decimal(5077125051)
    # The value signed is the double JavaScript held, so that is what we hand on.
    assert body["outcome_amount"] == Decimal("12345678901234567000")
    assert body["order_description"] == "Подписка на канал ✓"
    assert body["parent_payment_id"] is None

    def walk(value):
        assert not isinstance(value, float)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(body)


def test_signature_header_is_case_insensitive_hex_and_trimmed():
    signature = expected_sig(IPN_CANONICAL)
    verify_ipn(SECRET, IPN_RAW, signature.upper())
    verify_ipn(SECRET, IPN_RAW, f" {signature}\t")
    verify_ipn(SECRET.encode(), IPN_RAW, signature)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"price_amount":15.0', b'"price_amount":16.0'),
        (b'"price_amount":15.0', b'"price_amount":15.1'),
        (b'"pay_amount":0.00005', b'"pay_amount":0.00006'),
        (b'"actually_paid":1e-7', b'"actually_paid":1e-6'),
        (b'"payment_status":"finished"', b'"payment_status":"finishes"'),
        (b'"order_id":"inv_42"', b'"order_id":"inv_43"'),
        (b'"serviceFee":5e-05', b'"serviceFee":6e-05'),
        ("канал".encode(), "каНал".encode()),
        (b'"parent_payment_id":null', b'"parent_payment_id":1234'),
        (b'"invoice_id":4522625843', b'"invoice_id":4522625844'),
    ],
)
def test_one_character_change_in_the_body_fails(old, new):
    assert old in IPN_RAW
    with pytest.raises(BadSignature) as info:
        verify_ipn(SECRET, IPN_RAW.replace(old, new, 1), expected_sig(IPN_CANONICAL))
    assert info.value.code == "signature_mismatch"


@pytest.mark.parametrize("index", [0, 1, 63, 64, 127])
def test_one_character_change_in_the_signature_fails(index):
    signature = expected_sig(IPN_CANONICAL)
    other = "0" if signature[index] != "0" else "1"
    with pytest.raises(BadSignature):
        verify_ipn(SECRET, IPN_RAW, signature[:index] + other + signature[index + 1 :])


def test_wrong_secret_fails():
    with pytest.raises(BadSignature):
        verify_ipn("another-secret", IPN_RAW, expected_sig(IPN_CANONICAL))


def test_python_json_dumps_signature_is_not_accepted():
    # What a naive verifier would compute: it must not be what we expect NOWPayments to send.
    naive = json.dumps(json.loads(IPN_RAW), sort_keys=True, separators=(",", ":")).encode()
    assert naive != IPN_CANONICAL
    with pytest.raises(BadSignature):
        verify_ipn(SECRET, IPN_RAW, expected_sig(naive))


@pytest.mark.parametrize("header", [None, "", "   ", "\t"])
def test_missing_signature(header):
    with pytest.raises(MissingSignature) as info:
        verify_ipn(SECRET, IPN_RAW, header)
    assert info.value.code == "signature_missing"


@pytest.mark.parametrize(
    "header",
    [
        "a" * 127,
        "a" * 129,
        "g" * 128,
        "sha512=" + "a" * 128,
        hashlib.sha256(b"x").hexdigest(),
        "a" * 64 + " " + "a" * 64,
        "é" * 128,
    ],
)
def test_malformed_signature(header):
    with pytest.raises(MalformedSignature) as info:
        verify_ipn(SECRET, IPN_RAW, header)
    assert info.value.code == "signature_malformed"


MALFORMED_BODIES = [
    b"",
    b"   ",
    b"not json",
    b"[]",
    b'[{"a":1}]',
    b'"string"',
    b"1",
    b"null",
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":1e400}',
    b'{"a":-1e400}',
    b'{"a":' + b"9" * 400 + b"}",
    b'{"a":1}{"b":2}',
    b'{"a":1} x',
    b'{"a":1,}',
    b"{'a':1}",
    b'{"a":01}',
    b'{"a":.5}',
    b'{"a":1.}',
    b'{"a":+1}',
    b'{"a":-}',
    b'{"a":0x10}',
    b'{"a":true',
    b'{"a":"\x01"}',
    b'{"a":"\\x"}',
    b'{"a":"\\ud800',
    b'{"a":1,"a":2}',
    b'{"a":{"b":1,"b":1}}',
    b"\xff{}",
    b'{"a":"\xc3"}',
    b'{"a":"\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 is not UTF-8
    b'\xef\xbb\xbf{"a":1}',
    '{"a":1}'.encode("utf-16"),
    b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"a":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
]


@pytest.mark.parametrize("raw", MALFORMED_BODIES, ids=range(len(MALFORMED_BODIES)))
def test_malformed_body(raw):
    with pytest.raises(MalformedBody) as info:
        verify_ipn(SECRET, raw, "a" * 128)
    assert info.value.code == "body_malformed"
    with pytest.raises(MalformedBody):
        canonical_body(raw)
    with pytest.raises(MalformedBody):
        nowpayments_signature(SECRET, raw)


def test_nesting_up_to_the_limit_is_fine():
    raw = b'{"a":' + b"[" * 30 + b"]" * 30 + b"}"
    assert canonical_body(raw) == raw


def test_malformed_body_message_does_not_echo_the_body():
    with pytest.raises(MalformedBody) as info:
        verify_ipn(SECRET, b'{"secret-looking":', "a" * 128)
    assert "secret-looking" not in str(info.value)


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_is_a_configuration_error(secret):
    with pytest.raises(ValueError):
        verify_ipn(secret, IPN_RAW, expected_sig(IPN_CANONICAL))
    with pytest.raises(ValueError):
        nowpayments_signature(secret, IPN_RAW)
    with pytest.raises(ValueError):
        verify_ipn(secret, IPN_RAW, None)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (15.0, "15"),
        (-15.0, "-15"),
        (5e-05, "0.00005"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (123.456, "123.456"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (2.0**53, "9007199254740992"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (123e-20, "1.23e-18"),
    ],
)
def test_js_number(value, text):
    assert js_number(value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_js_number_refuses_non_finite(value):
    with pytest.raises(ValueError):
        js_number(value)


# Keys below the surrogates, not integer-like: there, Python's code point sort and JavaScript's
# key order agree. Integers within 2**53, so no double rounding. No floats, no lone surrogates.
json_keys = st.text(st.characters(max_codepoint=0xD7FF), max_size=8).filter(
    lambda k: not (k.isascii() and k.isdigit())
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
json_no_floats = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=4),
    max_leaves=20,
)
ipn_like = st.dictionaries(json_keys, json_no_floats, max_size=6)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(ipn_like, st.booleans())
def test_without_floats_canonical_equals_sorted_compact_json_dumps(body, ascii_on_wire):
    raw = json.dumps(body, ensure_ascii=ascii_on_wire).encode()
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_body(raw) == expected.encode()


any_json = st.recursive(
    json_scalars
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),  # may hold lone surrogates: json.dumps escapes them
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=6), any_json, max_size=6))
def test_canonical_body_is_idempotent(body):
    once = canonical_body(json.dumps(body).encode())
    assert canonical_body(once) == once
    once.decode("utf-8")  # always valid UTF-8, even with lone surrogates in the data


garbage = (
    st.binary(max_size=200)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.builds(
        lambda raw, i, b: raw[:i] + bytes([b]) + raw[i + 1 :],
        st.sampled_from([IPN_RAW, ESCAPES_RAW, KEYS_RAW, NUMBERS_RAW]),
        st.integers(0, 400),
        st.integers(0, 255),
    )
    | st.builds(
        lambda raw, i: raw[:i],
        st.sampled_from([IPN_RAW, ESCAPES_RAW, NUMBERS_RAW]),
        st.integers(0, 400),
    )
)
headers = st.none() | st.text(max_size=140) | st.just(expected_sig(IPN_CANONICAL))


@given(garbage, headers)
def test_garbage_only_ever_raises_documented_errors(raw, header):
    try:
        body = verify_ipn(SECRET, raw, header)
    except SignatureError:
        return
    assert isinstance(body, dict)


@given(st.data())
def test_any_one_byte_change_fails_or_means_the_same_body(data):
    raw = data.draw(st.sampled_from([IPN_RAW, IPN_CANONICAL, ESCAPES_RAW, NUMBERS_RAW]))
    signature = nowpayments_signature(SECRET, raw)
    original = verify_ipn(SECRET, raw, signature)
    index = data.draw(st.integers(0, len(raw) - 1))
    new_byte = data.draw(st.integers(0, 255))
    assume(new_byte != raw[index])
    tampered = raw[:index] + bytes([new_byte]) + raw[index + 1 :]
    try:
        body = verify_ipn(SECRET, tampered, signature)
    except (BadSignature, MalformedBody):
        return
    # Only a re-spelling of the same data can pass (e.g. 1e-7 -> 1E-7, or whitespace).
    assert canonical_body(tampered) == canonical_body(raw)
    assert body == original


# The fast serialiser (C encoder) must give the reference serialiser's bytes, or decline.

@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6), any_json, max_size=6), st.booleans())
def test_the_fast_serialiser_agrees_with_the_reference_or_declines(body, ascii_on_wire):
    raw = json.dumps(body, ensure_ascii=ascii_on_wire).encode("utf-8", "surrogatepass")
    try:
        parsed, text, plain = _parse_noting_keys(raw)
    except MalformedBody:
        return  # lone surrogates written raw are not UTF-8: refused before any serialiser runs
    fast = _serialise_fast(parsed, text, plain)
    assert fast is None or fast == _serialise(parsed)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_parsed_number_prints_back_as_javascript_spells_it(value):
    spelled = js_number(value)
    assert str(_number(spelled)).lower() == spelled  # what the fast path relies on


@pytest.mark.parametrize("raw", [
    IPN_RAW,
    '{"price_amount":15.0,"fee":{"serviceFee":0.00005},"pay_amount":1e-7,"big":1e21,"d":"Подписка ✓"}'.encode(),
])
def test_the_fast_path_takes_ordinary_ipns(raw):
    parsed, text, plain = _parse_noting_keys(raw)
    assert _serialise_fast(parsed, text, plain) == _serialise(parsed)


@pytest.mark.parametrize("raw", [
    b'{"b":1,"a":"\\u0000x"}',  # an escaped NUL could pass for a marker's end: declined
    b'{"a":"\\u0001"}',
    b'{"10":1,"9":2}',  # array-index keys: JavaScript puts them first, in numeric order
    '{"é":1,"z":2}'.encode(),  # non-ASCII keys: UTF-16 order
    b'{"a":"\\ud800"}',  # a lone surrogate: JavaScript escapes it, Python's encoder cannot
])
def test_the_fast_path_declines_what_it_cannot_spell_and_the_signature_still_verifies(raw):
    parsed, text, plain = _parse_noting_keys(raw)
    assert _serialise_fast(parsed, text, plain) is None
    signature = hmac.new(SECRET.encode(), _serialise(parsed), hashlib.sha512).hexdigest()
    assert verify_ipn(SECRET, raw, signature) == parsed


def test_a_signature_over_the_fast_bytes_of_a_declined_body_is_refused():
    raw = b'{"10":1,"9":2}'
    parsed, _text, _plain = _parse_noting_keys(raw)
    python_order = json.dumps(parsed, sort_keys=True, separators=(",", ":"), default=str).encode()
    with pytest.raises(BadSignature):
        verify_ipn(SECRET, raw, hmac.new(SECRET.encode(), python_order, hashlib.sha512).hexdigest())
