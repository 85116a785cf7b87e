"""The shared provider HTTP layer, against scripted transports: what is retried, what is not."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import httpx
import pytest

from telepay.clients.http import JsonHttp, OutcomeUnknown, ProviderError, ProviderUnavailable

KEY = "k3y-that-must-never-leak"


def _http(handler, sleeps: list[float] | None = None, retries: int = 3) -> JsonHttp:
    record = sleeps.append if sleeps is not None else (lambda seconds: None)
    return JsonHttp("Provider", "https://provider.test/v1", "x-api-key", KEY, timeout=1.0, retries=retries,
                    backoff=0.5, transport=httpx.MockTransport(handler), sleep=record)


def _script(*steps):
    """A handler that plays `steps` in order: a Response, or an exception class to raise."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        step = steps[min(len(calls), len(steps) - 1)]
        calls.append(request)
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted", request=request)
        return step

    handler.calls = calls
    return handler


def test_backoff_grows_and_retry_after_is_honoured():
    sleeps: list[float] = []
    handler = _script(httpx.Response(502), httpx.Response(500), httpx.Response(429, headers={"Retry-After": "7"}),
                      httpx.Response(200, json={"ok": True}))
    assert _http(handler, sleeps).request("GET", "/thing") == {"ok": True}
    assert len(handler.calls) == 4
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and sleeps[2] == 7.0


def test_exhausted_retries_are_provider_unavailable():
    handler = _script(httpx.Response(503, json={"message": "down"}))
    with pytest.raises(ProviderUnavailable) as raised:
        _http(handler, retries=2).request("GET", "/thing")
    assert len(handler.calls) == 3 and "down" in str(raised.value)


def test_4xx_is_not_retried_and_keeps_the_providers_words():
    handler = _script(httpx.Response(400, json={"statusCode": 400, "code": "INVALID_REQUEST_PARAMS",
                                                "message": '"price_amount" is required'}))
    with pytest.raises(ProviderError) as raised:
        _http(handler).request("POST", "/invoice", body={})
    assert len(handler.calls) == 1
    assert (raised.value.status, raised.value.code) == (400, "INVALID_REQUEST_PARAMS")
    assert raised.value.provider_message == '"price_amount" is required'


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError])
def test_unsafe_request_whose_answer_was_lost_is_outcome_unknown(failure):
    handler = _script(failure, httpx.Response(200, json={}))
    with pytest.raises(OutcomeUnknown):
        _http(handler).request("POST", "/exchange", body={}, idempotent=False)
    assert len(handler.calls) == 1


def test_unsafe_request_on_5xx_is_outcome_unknown_but_429_is_retried():
    handler = _script(httpx.Response(500))
    with pytest.raises(OutcomeUnknown):
        _http(handler).request("POST", "/exchange", body={}, idempotent=False)
    assert len(handler.calls) == 1
    handler = _script(httpx.Response(429), httpx.Response(200, json={"id": "x"}))
    assert _http(handler).request("POST", "/exchange", body={}, idempotent=False) == {"id": "x"}


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_unsafe_request_that_never_left_is_retried(failure):
    handler = _script(failure, httpx.Response(200, json={"id": "x"}))
    assert _http(handler).request("POST", "/exchange", body={}, idempotent=False) == {"id": "x"}
    assert len(handler.calls) == 2


def test_answers_parse_to_decimal_and_bodies_are_written_from_decimal():
    handler = _script(httpx.Response(200, content=b'{"amount":0.00005,"n":3}'))
    http = _http(handler)
    answer = http.request("POST", "/x", body={"price_amount": Decimal("15.00"), "tiny": Decimal("0.00005")})
    assert answer == {"amount": Decimal("0.00005"), "n": 3} and isinstance(answer["amount"], Decimal)
    assert handler.calls[0].content == b'{"price_amount":15.0,"tiny":0.00005}'
    assert json.loads(handler.calls[0].content, parse_float=Decimal)["price_amount"] == Decimal("15.00")


def test_floats_are_refused():
    http = _http(_script(httpx.Response(200, json={})))
    with pytest.raises(TypeError):
        http.request("POST", "/x", body={"amount": 0.1})
    with pytest.raises(TypeError):
        http.request("GET", "/x", params={"amount": 0.1})


def test_unreadable_success_is_provider_unavailable():
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        _http(_script(httpx.Response(200, content=b"<html>gateway</html>"))).request("GET", "/x")


def test_the_key_is_sent_but_never_shown(caplog):
    echo = httpx.Response(401, json={"message": f"key {KEY} is not valid"})
    handler = _script(httpx.Response(500, json={"message": f"boom for {KEY}"}), echo)
    http = _http(handler)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        http.request("GET", "/x")
    assert handler.calls[0].headers["x-api-key"] == KEY
    assert KEY not in str(raised.value) and KEY not in repr(raised.value.args)
    assert KEY not in raised.value.provider_message and "[api key]" in raised.value.provider_message
    assert KEY not in caplog.text and KEY not in repr(http)
