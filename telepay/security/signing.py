"""Signatures on our internal webhooks (``POST /webhooks/*`` from trusted callers).

Owns the wire format, shared with every caller and the ``telepay sign`` command:

    X-Signature-Timestamp: <unix seconds>
    X-Signature: hex(HMAC-SHA256(secret, b"<timestamp>.<METHOD>.<path>." + raw body))

as Stripe does it, plus the request line. Signing the timestamp together with the body is what
makes the time window meaningful: an attacker cannot move a captured request into the window
without the secret. Signing the method (upper case) and the path (no query string, as routed)
binds the signature to the one endpoint it was made for: a signature captured from
`POST /webhooks/notification` opens nothing else, `GET /status` included.

Replay protection is not here: it needs shared, durable state (the API may run as several
processes), so the caller records each accepted signature in PostgreSQL under
``replay_key(signature)`` and keeps it until ``timestamp + tolerance``, after which ``verify``
rejects that request as stale anyway.
"""

import hashlib
import hmac
import re
import time

from telepay.security.errors import (
    BadSignature,
    FutureSignature,
    MalformedSignature,
    MissingSignature,
    StaleSignature,
)

TIMESTAMP_HEADER = "X-Signature-Timestamp"
SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOLERANCE = 300

# Plain ASCII digits only: int() would also take "+5", "1_000", " 5" and non-ASCII digits,
# which a caller could use to send one signed timestamp in many spellings. Fifteen digits is
# far past any real unix time and keeps int() from chewing on absurd input.
_TIMESTAMP_RE = re.compile(r"[0-9]{1,15}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
# Optional whitespace around a header value is legal HTTP; servers usually strip it already.
_OWS = " \t"


def _key(secret: bytes | str) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not key:
        # An empty key makes every signature forgeable; this is a configuration bug.
        raise ValueError("webhook signing secret is empty")
    return key


def _request_line(method: str, path: str) -> bytes:
    # Dots separate the parts, so neither the method nor the path may hold one: otherwise a
    # signature for "/a" with body "b.c" would also be one for "/a.b" with body "c".
    if not method.isalpha() or not path.startswith("/") or "." in path:
        raise ValueError("sign a method and an absolute path without dots, e.g. POST /webhooks/notification")
    return f"{method.upper()}.{path}.".encode()


def _digest(key: bytes, body: bytes, timestamp: int, line: bytes) -> bytes:
    return hmac.new(key, f"{timestamp}.".encode("ascii") + line + bytes(body), hashlib.sha256).digest()


def sign(secret: bytes | str, body: bytes, timestamp: int, *, method: str, path: str) -> str:
    """Return the hex signature of ``body`` sent to ``method path`` at ``timestamp`` (unix seconds)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError("timestamp must be a non-negative int of unix seconds")
    return _digest(_key(secret), body, timestamp, _request_line(method, path)).hex()


def signature_headers(secret: bytes | str, body: bytes, *, method: str, path: str,
                      now: float | None = None) -> dict[str, str]:
    """Return the two headers a caller sends with ``body`` to ``method path``, signed at ``now``."""
    timestamp = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, body, timestamp, method=method, path=path),
    }


def _parse_signature(signature_header: str) -> bytes:
    value = signature_header.strip(_OWS)
    if not _SIGNATURE_RE.fullmatch(value):
        raise MalformedSignature("X-Signature must be 64 hex digits")
    return bytes.fromhex(value)


def replay_key(signature_header: str) -> str:
    """Return the key under which an accepted signature is remembered against replays.

    It is the lower-case hex of the decoded digest, so the same signature sent in upper case or
    with surrounding whitespace maps to the same key. The digest alone is enough: it covers the
    timestamp, the request line and the body, and nobody without the secret can make another valid one.
    """
    return _parse_signature(signature_header).hex()


def verify(
    secret: bytes | str,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    method: str,
    path: str,
) -> int:
    """Check a signed request and return its timestamp; raise a ``SignatureError`` if not valid.

    ``now`` is unix seconds, passed in so callers and tests control the clock. A timestamp up to
    ``tolerance`` seconds old or ahead (clock skew) is accepted, both bounds included.
    """
    key = _key(secret)
    if not timestamp_header or not timestamp_header.strip(_OWS):
        raise MissingSignature("X-Signature-Timestamp header is missing")
    if not signature_header or not signature_header.strip(_OWS):
        raise MissingSignature("X-Signature header is missing")
    timestamp_text = timestamp_header.strip(_OWS)
    if not _TIMESTAMP_RE.fullmatch(timestamp_text):
        raise MalformedSignature("X-Signature-Timestamp must be unix seconds")
    timestamp = int(timestamp_text)
    given = _parse_signature(signature_header)
    try:
        line = _request_line(method, path)
    except ValueError:
        raise BadSignature("no signature can cover this method and path") from None

    # The digest is checked before the clock, so "stale" and "future" only ever reach someone
    # holding the secret: for them it means "your signature is right, your clock is not".
    if not hmac.compare_digest(_digest(key, body, timestamp, line), given):
        raise BadSignature("signature does not match")
    if now - timestamp > tolerance:
        raise StaleSignature(f"timestamp is more than {tolerance} s old")
    if timestamp - now > tolerance:
        raise FutureSignature(f"timestamp is more than {tolerance} s ahead")
    return timestamp
