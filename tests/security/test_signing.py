"""Internal webhook signatures: the pinned format, every rejection, and round-trip properties."""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telepay.security import signing
from telepay.security.errors import (
    BadSignature,
    FutureSignature,
    MalformedSignature,
    MissingSignature,
    SignatureError,
    StaleSignature,
)

SECRET = "whsec_telepay_test"
BODY = b'{"chat_id":-1001234567890,"text":"hello"}'
TS = 1_700_000_000
METHOD, PATH = "POST", "/webhooks/notification"
LINE = {"method": METHOD, "path": PATH}
# Computed independently: printf '%s' '1700000000.POST./webhooks/notification.{...}' | openssl dgst -sha256 -hmac ...
# If this test fails, every caller's signatures stop verifying: the format changed.
VECTOR = "35b6ee6d99b819cf390dcf587d157e296537ca64f39c239ef5ba76b6c6edfbb7"


def test_fixed_vector_pins_the_format():
    assert signing.sign(SECRET, BODY, TS, **LINE) == VECTOR
    assert signing.sign(SECRET.encode(), BODY, TS, **LINE) == VECTOR
    assert signing.verify(SECRET, BODY, str(TS), VECTOR, now=TS, **LINE) == TS


def test_format_is_hmac_sha256_of_timestamp_method_path_body():
    expected = hmac.new(b"k", b"42.POST./webhooks/notification.body", hashlib.sha256).hexdigest()
    assert signing.sign(b"k", b"body", 42, **LINE) == expected
    assert signing.sign(b"k", b"body", 42, method="post", path=PATH) == expected


@pytest.mark.parametrize("method, path", [("GET", "/status"), ("POST", "/webhooks/broadcast-trigger"),
                                          ("GET", PATH), ("POST", "/webhooks/notification/")])
def test_finding_8_a_signature_opens_only_its_own_method_and_path(method, path):
    with pytest.raises(BadSignature):
        signing.verify(SECRET, BODY, str(TS), VECTOR, now=TS, method=method, path=path)


@pytest.mark.parametrize("method, path", [("POST", "/a.b"), ("POST", "webhooks"), ("PO.ST", "/a"), ("", "/a")])
def test_a_request_line_that_could_be_split_two_ways_is_never_signed(method, path):
    with pytest.raises(ValueError):
        signing.sign(SECRET, BODY, TS, method=method, path=path)
    with pytest.raises(BadSignature):
        signing.verify(SECRET, BODY, str(TS), "0" * 64, now=TS, method=method, path=path)


def test_signature_headers_names_and_values():
    headers = signing.signature_headers(SECRET, BODY, now=TS + 0.9, **LINE)
    assert headers == {"X-Signature-Timestamp": str(TS), "X-Signature": VECTOR}


def test_signature_headers_default_clock_verifies_now():
    import time

    headers = signing.signature_headers(SECRET, BODY, **LINE)
    ts = signing.verify(
        SECRET, BODY, headers["X-Signature-Timestamp"], headers["X-Signature"], now=time.time(), **LINE
    )
    assert ts == int(headers["X-Signature-Timestamp"])


@pytest.mark.parametrize(
    "signature", [VECTOR.upper(), f" {VECTOR}", f"{VECTOR}\t"], ids=["upper", "lead-ws", "trail-ws"]
)
def test_equivalent_spellings_verify_and_share_one_replay_key(signature):
    assert signing.verify(SECRET, BODY, f" {TS} ", signature, now=TS, **LINE) == TS
    assert signing.replay_key(signature) == VECTOR


def test_window_bounds_are_inclusive():
    assert signing.verify(SECRET, BODY, str(TS), VECTOR, now=TS + 300, **LINE) == TS
    assert signing.verify(SECRET, BODY, str(TS), VECTOR, now=TS - 300, **LINE) == TS
    assert signing.verify(SECRET, BODY, str(TS), VECTOR, now=TS + 30, tolerance=30, **LINE) == TS


@pytest.mark.parametrize(
    ("now", "tolerance", "error"),
    [
        (TS + 301, 300, StaleSignature),
        (TS + 300.5, 300, StaleSignature),
        (TS + 10**6, 300, StaleSignature),
        (TS + 31, 30, StaleSignature),
        (TS - 301, 300, FutureSignature),
        (TS - 300.5, 300, FutureSignature),
        (0, 300, FutureSignature),
        (TS - 31, 30, FutureSignature),
    ],
)
def test_outside_the_window(now, tolerance, error):
    with pytest.raises(error):
        signing.verify(SECRET, BODY, str(TS), VECTOR, now=now, tolerance=tolerance, **LINE)


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        (None, VECTOR),
        ("", VECTOR),
        ("  ", VECTOR),
        (str(TS), None),
        (str(TS), ""),
        (str(TS), " \t"),
        (None, None),
    ],
)
def test_missing(timestamp, signature):
    with pytest.raises(MissingSignature) as info:
        signing.verify(SECRET, BODY, timestamp, signature, now=TS, **LINE)
    assert info.value.code == "signature_missing"


@pytest.mark.parametrize(
    "timestamp",
    [
        "-1700000000",
        "+1700000000",
        "1700000000.0",
        "1_700_000_000",
        "1e9",
        "0x6553f100",
        "１７００００００００",  # full-width digits: int() would accept them
        "١٧٠٠٠٠٠٠٠٠",  # Arabic-Indic digits
        "1700000000 1",
        "9" * 16,
        "abc",
        "t=1700000000",
    ],
)
def test_malformed_timestamp(timestamp):
    with pytest.raises(MalformedSignature) as info:
        signing.verify(SECRET, BODY, timestamp, VECTOR, now=TS, **LINE)
    assert info.value.code == "signature_malformed"


@pytest.mark.parametrize(
    "signature",
    [
        VECTOR[:-1],
        VECTOR + "0",
        VECTOR[:-1] + "g",
        "v1=" + VECTOR,
        VECTOR[:32] + " " + VECTOR[32:],
        "sha256=" + VECTOR,
        hmac.new(SECRET.encode(), b"x", hashlib.sha512).hexdigest(),
        "0x" + VECTOR[2:],
        "é" * 64,
    ],
)
def test_malformed_signature(signature):
    with pytest.raises(MalformedSignature):
        signing.verify(SECRET, BODY, str(TS), signature, now=TS, **LINE)
    with pytest.raises(MalformedSignature):
        signing.replay_key(signature)


@pytest.mark.parametrize(
    ("secret", "body", "timestamp", "signature"),
    [
        ("other-secret", BODY, str(TS), VECTOR),
        (SECRET, BODY + b" ", str(TS), VECTOR),
        (SECRET, BODY.replace(b"hello", b"hellO"), str(TS), VECTOR),
        (SECRET, b"", str(TS), VECTOR),
        (SECRET, BODY, str(TS + 1), VECTOR),
        (SECRET, BODY, "0" + str(TS), signing.sign(SECRET, BODY, TS, **LINE).replace("4", "5", 1)),
        (SECRET, BODY, str(TS), "0" * 64),
        (SECRET, BODY, str(TS), VECTOR[:-1] + "f"),
    ],
)
def test_bad_signature(secret, body, timestamp, signature):
    with pytest.raises(BadSignature) as info:
        signing.verify(secret, body, timestamp, signature, now=TS, **LINE)
    assert info.value.code == "signature_mismatch"


def test_leading_zero_timestamp_is_the_same_signed_value():
    # "01700000000" parses to the same int, and the signature covers the int's decimal text,
    # so it verifies; the replay key is the digest, so it cannot be used to replay.
    assert signing.verify(SECRET, BODY, "0" + str(TS), VECTOR, now=TS, **LINE) == TS


def test_forged_request_gets_mismatch_not_clock_errors():
    # The digest is checked first, so a stale forgery learns nothing about our clock.
    with pytest.raises(BadSignature):
        signing.verify(SECRET, BODY, "1", "0" * 64, now=TS, **LINE)


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_is_a_configuration_error(secret):
    with pytest.raises(ValueError):
        signing.sign(secret, BODY, TS, **LINE)
    with pytest.raises(ValueError):
        signing.verify(secret, BODY, str(TS), VECTOR, now=TS, **LINE)
    with pytest.raises(ValueError):  # reported even when the request has no signature
        signing.verify(secret, BODY, None, None, now=TS, **LINE)


@pytest.mark.parametrize("timestamp", [-1, 1.5, "1700000000", True, None])
def test_sign_rejects_bad_timestamps(timestamp):
    with pytest.raises(ValueError):
        signing.sign(SECRET, BODY, timestamp, **LINE)


def test_codes_are_stable_and_distinct():
    codes = {
        SignatureError: "signature_invalid",
        MissingSignature: "signature_missing",
        MalformedSignature: "signature_malformed",
        StaleSignature: "signature_stale",
        FutureSignature: "signature_future",
        BadSignature: "signature_mismatch",
    }
    for cls, code in codes.items():
        assert cls.code == code
        assert issubclass(cls, SignatureError)


secrets = st.one_of(st.binary(min_size=1, max_size=64), st.text(min_size=1, max_size=32))
timestamps = st.integers(min_value=0, max_value=10**12)


@given(secret=secrets, body=st.binary(max_size=512), ts=timestamps, skew=st.integers(-300, 300))
def test_round_trip(secret, body, ts, skew):
    headers = signing.signature_headers(secret, body, now=ts, **LINE)
    got = signing.verify(
        secret, body, headers["X-Signature-Timestamp"], headers["X-Signature"], now=ts + skew, **LINE
    )
    assert got == ts
    assert signing.replay_key(headers["X-Signature"]) == headers["X-Signature"]


@given(
    secret=secrets,
    body=st.binary(min_size=1, max_size=256),
    ts=timestamps,
    data=st.data(),
)
def test_any_one_byte_change_in_the_body_fails(secret, body, ts, data):
    signature = signing.sign(secret, body, ts, **LINE)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(BadSignature):
        signing.verify(secret, tampered, str(ts), signature, now=ts, **LINE)


@given(secret=secrets, body=st.binary(max_size=256), ts=timestamps, data=st.data())
def test_any_one_character_change_in_the_signature_fails(secret, body, ts, data):
    signature = signing.sign(secret, body, ts, **LINE)
    index = data.draw(st.integers(0, len(signature) - 1))
    other = data.draw(st.sampled_from("0123456789abcdef").filter(lambda c: c != signature[index]))
    tampered = signature[:index] + other + signature[index + 1 :]
    with pytest.raises(BadSignature):
        signing.verify(secret, body, str(ts), tampered, now=ts, **LINE)


@given(secret=secrets, body=st.binary(max_size=64), ts=timestamps, other=timestamps)
def test_a_signature_does_not_move_to_another_timestamp(secret, body, ts, other):
    signature = signing.sign(secret, body, ts, **LINE)
    if other != ts:
        with pytest.raises(BadSignature):
            signing.verify(secret, body, str(other), signature, now=other, **LINE)
