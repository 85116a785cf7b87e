"""Guards for protected routes, as decorators applied in the order
rate limit -> IP allowlist -> signature -> schema.

The IPN route's outer guard is `ipn_guarded`: its rate limit spends a token only on a refusal
that an unsigned caller earned, and every refusal is logged, kept and counted (`IpnRefusals`).

Each guard answers a bad request itself with `{"error": code, "message": ...}` and a 4xx, so a
view only ever runs on a request that passed all of them. What the guards need is built once
per app (`Guards.from_settings`) and read from the app's TelePay extension at request time.
"""

from __future__ import annotations

import functools
import hmac
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from flask import Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from telepay.config import Settings, reveal
from telepay.errors import TelePayError
from telepay.security import nowpayments, signing
from telepay.security.allowlist import IpAllowlist
from telepay.security.client_ip import IPNetwork, client_ip, parse_networks, rate_limit_key
from telepay.security.errors import SignatureError
from telepay.security.ratelimit import TokenBucketLimiter

# Budget names: each protected route group has its own buckets, so a flood on one route does
# not starve another.
INTERNAL, IPN, STATUS = "internal", "ipn", "status"


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    g.refused = (code, message)  # for `ipn_guarded`, which counts the IPN route's refusals
    response = jsonify(error=code, message=message)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@dataclass
class Guards:
    trusted_proxies: list[IPNetwork]
    internal_allowlist: IpAllowlist
    ipn_allowlist: IpAllowlist
    limiters: dict[str, TokenBucketLimiter]
    signing_secret: str
    ipn_secret: str
    operator_token: str | None
    now: Callable[[], float]
    ipv6_prefix: int = 64
    # Told of every IPN refusal (client address, reason, detail): `IpnRefusals.refused`.
    on_ipn_refused: Callable[[str, str, str], None] | None = None
    # During a secret's rotation, the previous value is accepted too (`*_PREVIOUS` settings).
    signing_secret_previous: str | None = None
    ipn_secret_previous: str | None = None

    def __post_init__(self) -> None:
        # Parsing addresses and walking the proxy chain cost more than the rest of the guards;
        # the same few peers (NOWPayments, Caddy) call again and again. Bounded, like the buckets.
        self.client_ip = functools.lru_cache(maxsize=4096)(self._client_ip)

    def _client_ip(self, peer: str, forwarded: str | None) -> str:
        return client_ip(peer, forwarded, self.trusted_proxies)

    @classmethod
    def from_settings(cls, settings: Settings, now: Callable[[], float],
                      on_ipn_refused: Callable[[str, str, str], None] | None = None) -> Guards:
        ipn_ips = settings.nowpayments_ipn_ips
        ipn_networks = [] if [v.lower() for v in ipn_ips] == ["any"] else parse_networks(",".join(ipn_ips))
        per_minute, burst = settings.rate_limit_per_minute, settings.rate_limit_burst
        return cls(
            trusted_proxies=parse_networks(",".join(settings.trusted_proxies)),
            internal_allowlist=IpAllowlist(parse_networks(",".join(settings.allowed_ips))),
            ipn_allowlist=IpAllowlist(ipn_networks),
            limiters={name: TokenBucketLimiter(per_minute, burst) for name in (INTERNAL, IPN, STATUS)},
            signing_secret=reveal(settings.webhook_signing_secret),
            ipn_secret=reveal(settings.nowpayments_ipn_secret),
            operator_token=reveal(settings.operator_token),
            now=now,
            ipv6_prefix=settings.rate_limit_ipv6_prefix,
            on_ipn_refused=on_ipn_refused,
            signing_secret_previous=reveal(settings.webhook_signing_secret_previous),
            ipn_secret_previous=reveal(settings.nowpayments_ipn_secret_previous),
        )


def _guards() -> Guards:
    # The extension is `telepay.api.state.ApiState`; read by attribute so security needs no api import.
    guards: Guards = current_app.extensions["telepay"].guards
    return guards


def request_ip() -> str:
    """The client's address: the socket peer, or what a trusted proxy says it saw."""
    if "client_ip" not in g:
        # The WSGI server has already joined repeated X-Forwarded-For headers with commas.
        forwarded = request.environ.get("HTTP_X_FORWARDED_FOR") or None
        g.client_ip = _guards().client_ip(request.remote_addr or "", forwarded)
    return g.client_ip


def rate_limited(budget: str):
    """Token bucket per client IP (per IPv6 network, /64 by default). (The IPN route has its
    own: `ipn_guarded`.)"""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            guards, ip = _guards(), request_ip()
            allowed, retry_after = guards.limiters[budget].hit(rate_limit_key(ip, guards.ipv6_prefix))
            if not allowed:
                return error(429, "rate_limited", "Too many requests; slow down.",
                             {"Retry-After": str(retry_after)})
            return view(*args, **kwargs)

        return wrapper

    return decorate


# The IPN route's refusals by the code of the guard that refused them.
_IPN_REASONS = {
    "ip_not_allowed": "address", "signature_missing": "signature", "signature_malformed": "signature",
    "signature_mismatch": "signature", "body_malformed": "signature", "unsupported_media_type": "schema",
    "invalid_payload": "schema",
}
# Refusals only a stranger earns; they spend the caller's rate-limit budget.
_UNSIGNED = ("address", "signature")


def ipn_guarded(view):
    """The IPN route's outermost guard: the rate limit, and a record of every refusal.

    The limit is checked first, as on every protected route, but only a refusal for the address
    or the signature spends a token. So NOWPayments' validly signed IPNs are never throttled, even
    with the allowlist off (NOWPAYMENTS_IPN_IPS=any) and however many arrive at once, while a
    caller sending forgeries gets RATE_LIMIT_BURST refusals, then 429s. (A signed IPN refused for
    its content is NOWPayments': it spends nothing.) Allowlisted addresses are never limited.
    Every refusal goes to `IpnRefusals` (log line, `refused_ipns` row, alert on a run)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        guards, ip = _guards(), request_ip()
        trusted = not guards.ipn_allowlist.allows_all and guards.ipn_allowlist.allows(ip)
        if not trusted:
            allowed, retry_after = guards.limiters[IPN].peek(rate_limit_key(ip, guards.ipv6_prefix))
            if not allowed:
                return error(429, "rate_limited", "Too many refused requests; slow down.",
                             {"Retry-After": str(retry_after)})
        try:
            response = view(*args, **kwargs)
        except TelePayError as refused:  # signed and readable, but not ours (unknown order, ...)
            if 400 <= refused.status < 500:
                _ipn_refused(ip, "order", f"{refused.code}: {refused.message}")
            raise
        except HTTPException as refused:  # e.g. a body over the size limit: it was never verified
            if refused.code is not None and 400 <= refused.code < 500:
                _ipn_refused(ip, "signature", f"{refused.code} {refused.name}")
                if not trusted:
                    guards.limiters[IPN].hit(rate_limit_key(ip, guards.ipv6_prefix))
            raise
        if 400 <= response.status_code < 500 and "refused" in g:
            code, message = g.refused
            reason = _IPN_REASONS.get(code, "schema")
            _ipn_refused(ip, reason, f"{code}: {message}")
            if reason in _UNSIGNED and not trusted:
                guards.limiters[IPN].hit(rate_limit_key(ip, guards.ipv6_prefix))
        return response

    return wrapper


def _ipn_refused(ip: str, reason: str, detail: str) -> None:
    refused = _guards().on_ipn_refused
    if refused is not None:
        refused(ip, reason, detail)


def allowlisted(which: str):
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            guards = _guards()
            allowlist = guards.ipn_allowlist if which == IPN else guards.internal_allowlist
            if not allowlist.allows(request_ip()):
                return error(403, "ip_not_allowed", "This address may not call this endpoint.")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _with_previous(current: str, previous: str | None, verify: Callable[[str], Any]) -> Any:
    """Verify with the current secret; on a mismatch, with the previous one (a rotation under way).
    Any other refusal (stale, malformed, missing) is the same whichever secret signed."""
    try:
        return verify(current)
    except SignatureError as failure:
        if previous is None or failure.code != "signature_mismatch":
            raise
        return verify(previous)


def _check_internal_signature() -> Response | None:
    guards = _guards()
    body = request.get_data(cache=True)
    try:
        _with_previous(guards.signing_secret, guards.signing_secret_previous, lambda secret: signing.verify(
            secret, body,
            request.headers.get(signing.TIMESTAMP_HEADER), request.headers.get(signing.SIGNATURE_HEADER),
            now=guards.now(), method=request.method, path=request.path,
        ))
    except SignatureError as failure:
        return error(401, failure.code, str(failure))
    # Recorded by the view's transaction (`telepay.api.db.transaction`), so a request refused
    # later (schema, unknown id) leaves no trace and a replay races on a primary key.
    g.replay_key = signing.replay_key(request.headers[signing.SIGNATURE_HEADER])
    return None


def signed_internal(view):
    """`X-Signature-Timestamp` + `X-Signature` (HMAC-SHA256 of "{timestamp}.{METHOD}.{path}.{raw body}")."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        refused = _check_internal_signature()
        return refused if refused is not None else view(*args, **kwargs)

    return wrapper


def operator_or_signed(view):
    """Either `Authorization: Bearer <OPERATOR_TOKEN>` or an internal signature."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = _guards().operator_token
        given = request.headers.get("Authorization", "")
        if token and given.startswith("Bearer ") and hmac.compare_digest(
            given[len("Bearer "):].strip().encode(), token.encode()
        ):
            return view(*args, **kwargs)
        refused = _check_internal_signature()
        return refused if refused is not None else view(*args, **kwargs)

    return wrapper


def signed_ipn(view):
    """NOWPayments' `x-nowpayments-sig` over the JSON.stringify-canonical body; on success the
    parsed body (numbers as Decimal) is in `g.ipn`."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            guards = _guards()
            g.ipn = _with_previous(guards.ipn_secret, guards.ipn_secret_previous, lambda secret: nowpayments.verify_ipn(
                secret, request.get_data(cache=True), request.headers.get(nowpayments.SIGNATURE_HEADER),
            ))
        except SignatureError as failure:
            return error(401 if failure.code != "body_malformed" else 400, failure.code, str(failure))
        return view(*args, **kwargs)

    return wrapper


def validated(model: type[BaseModel], source: str = "json"):
    """Validate the payload against `model` into `g.payload`. `source="ipn"` validates the body
    the IPN guard already parsed; otherwise the raw body must be JSON."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if request.mimetype != "application/json":
                return error(415, "unsupported_media_type", "Send the body as application/json.")
            if source == "ipn":
                data = g.ipn
            else:
                try:
                    data = json.loads(request.get_data(cache=True), parse_float=Decimal)
                except (ValueError, UnicodeDecodeError):
                    return error(400, "malformed_json", "The body is not valid JSON.")
            try:
                g.payload = model.model_validate(data)
            except ValidationError as invalid:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in invalid.errors()[:5]
                )
                return error(422, "invalid_payload", problems)
            return view(*args, **kwargs)

        return wrapper

    return decorate
