"""JSON over HTTP to a payment provider: retries, backoff, and the errors callers handle.

One `JsonHttp` per provider client. What it promises:

* 5xx, 429 and network failures are retried with exponential backoff and jitter (a 429's
  `Retry-After` is honoured, capped); when the tries run out, `ProviderUnavailable`;
* any other 4xx is the provider refusing this request: `ProviderError` at once, with the HTTP
  status, the provider's error code and message, never retried;
* a request that is not safe to repeat (`idempotent=False`) is retried only when it provably
  never reached the provider (connection refused, pool timeout) or was turned away by the rate
  limiter (429). Once it may have been processed (timeout while waiting for the answer, a 5xx,
  a dropped connection), `OutcomeUnknown` is raised instead: the caller must look for what it
  may have created before trying again;
* answers are parsed with every JSON number with a fraction as `Decimal`;
* the API key goes only into the request header. It is never logged and is scrubbed from any
  text the provider sends back, so it cannot leak into an exception or a log line.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from functools import cache
from decimal import Decimal
from typing import Any

import httpx

from telepay.clients import jsontext

logger = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 30.0
# Failures before the request left this machine: repeating cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class ProviderFailure(Exception):
    """A payment provider did not do what was asked. Callers apologise and retry later."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message


class ProviderError(ProviderFailure):
    """The provider refused the request (4xx). Repeating the same request will not help."""

    def __init__(self, provider: str, status: int, code: str | None, message: str) -> None:
        super().__init__(provider, f"{status} {code or 'error'}: {message}")
        self.status = status
        self.code = code
        self.provider_message = message


class ProviderUnavailable(ProviderFailure):
    """The provider kept failing (5xx, 429, network) or answered something unreadable."""

    def __init__(self, provider: str, message: str, status: int | None = None) -> None:
        super().__init__(provider, message)
        self.status = status


class OutcomeUnknown(ProviderFailure):
    """A request that must not be repeated blindly may or may not have taken effect."""


def to_decimal(value: Any) -> Decimal | None:
    """A provider's amount (JSON number or numeric string) as Decimal; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"refusing {type(value).__name__} as money")
    return Decimal(value)


@cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context (httpx's default: certifi's CA bundle) every client shares.

    Building one reads and parses the whole CA bundle, about 30 ms of CPU, and httpx builds one
    for each client it makes, even one that only ever speaks plain HTTP; a context is safe to
    share between clients and threads, so the process builds it once, when first asked."""
    return httpx.create_ssl_context()


class JsonHttp:
    def __init__(self, provider: str, base_url: str, auth_header: str, api_key: str, *, timeout: float,
                 retries: int, backoff: float, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key:
            raise ValueError(f"{provider} API key is empty")
        self.provider = provider
        self._secret = api_key
        self._retries = max(0, retries)
        self._backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                    headers={auth_header: api_key, "Accept": "application/json"},
                                    verify=tls_context())

    def __repr__(self) -> str:
        return f"JsonHttp({self.provider!r}, {str(self._client.base_url)!r})"

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Mapping[str, Any] | None = None, idempotent: bool = True,
                headers: Mapping[str, str] | None = None) -> Any:
        """`headers` add to the client's own for this request (e.g. a short-lived bearer token)."""
        content = jsontext.dumps(body).encode() if body is not None else None
        headers = {**({"Content-Type": "application/json"} if content is not None else {}), **(headers or {})}
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        last = "no attempt made"
        for attempt in range(self._retries + 1):
            wait: float | None = None
            try:
                response = self._client.request(method, path, params=query, content=content, headers=headers)
            except httpx.HTTPError as error:
                last = self._scrub(f"{type(error).__name__}: {error}")
                if not idempotent and not isinstance(error, _NOT_SENT):
                    raise OutcomeUnknown(self.provider, f"{method} {path}: no answer ({last})") from None
            else:
                status = response.status_code
                if status < 400:
                    return self._parse(response, method, path)
                code, message = self._error_text(response)
                if status != 429 and status < 500:
                    raise ProviderError(self.provider, status, code, message)
                last = f"{status} {code or ''} {message}".strip()
                if not idempotent and status != 429:
                    raise OutcomeUnknown(self.provider, f"{method} {path}: answered {last}")
                wait = _retry_after(response)
            if attempt < self._retries:
                delay = wait if wait is not None else self._backoff * 2**attempt * random.uniform(0.5, 1.0)
                logger.warning("%s %s %s failed (%s); retry %d of %d in %.2fs", self.provider, method, path,
                               last, attempt + 1, self._retries, delay)
                self._sleep(delay)
        raise ProviderUnavailable(self.provider, f"{method} {path} failed {self._retries + 1} times; last: {last}")

    def _parse(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return json.loads(response.content.decode("utf-8"), parse_float=Decimal)
        except ValueError:
            raise ProviderUnavailable(self.provider, f"{method} {path}: answer is not JSON",
                                      response.status_code) from None

    def _error_text(self, response: httpx.Response) -> tuple[str | None, str]:
        try:
            body = json.loads(response.content.decode("utf-8"), parse_float=Decimal)
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body.get("code") or body.get("error")
            message = body.get("message") or body.get("error") or response.reason_phrase
            return (self._scrub(str(code)) if code is not None else None), self._scrub(str(message))
        return None, self._scrub(response.text[:200] or response.reason_phrase)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "[api key]")


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise TypeError("refusing float in a money API query; use Decimal")
    if isinstance(value, Decimal):
        return jsontext.number_text(value, "decimal").removesuffix(".0")
    return str(value)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return None
