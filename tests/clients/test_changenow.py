"""ChangeNowClient against the ChangeNOW sandbox and the dev chain, over real loopback HTTP."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from eth_account import Account

from telepay.clients.changenow import (
    ChangeNowClient, Estimate, OutcomeUnknown, ProviderError, ProviderUnavailable,
)
from telepay.clock import ManualClock
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.harness import free_port
from telepay_sandbox.loopback import LoopbackServer, Request, Response

KEY = "cn-client-test-key-0123456789"
ETH_TO_USDT = dict(from_currency="eth", to_currency="usdt", from_network="eth", to_network="eth")


@pytest.fixture(scope="module")
def chain():
    return DevChain()


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def sandbox(chain, clock):
    with ChangeNowSandbox(KEY, chain, clock=clock) as changenow:
        yield changenow


@pytest.fixture
def client(sandbox):
    with ChangeNowClient(sandbox.base_url, KEY, timeout=2.0, backoff=0.01) as cn_client:
        yield cn_client


def _create(client, owner, user_id=None, amount=Decimal(40)) -> tuple[Estimate, object]:
    quote = client.estimate(**ETH_TO_USDT, to_amount=amount, type_="reverse")
    exchange = client.create_exchange(**ETH_TO_USDT, address=owner, to_amount=amount, type_="reverse",
                                      rate_id=quote.rate_id, user_id=user_id)
    return quote, exchange


def test_estimate_is_a_fixed_rate_quote_in_decimal(client):
    quote = client.estimate(**ETH_TO_USDT, to_amount=Decimal(40), type_="reverse")
    assert quote.to_amount == Decimal(40) and quote.from_amount == Decimal("0.0168528")
    assert isinstance(quote.from_amount, Decimal) and quote.withdrawal_fee == Decimal("1.5")
    assert quote.rate_id and quote.valid_until.tzinfo is not None and quote.valid_until > datetime.now().astimezone()


def test_range_and_address_check(client):
    fixed = client.range(**ETH_TO_USDT)
    assert fixed.min_amount == Decimal("0.004") and fixed.max_amount == Decimal(20)
    assert client.range(**ETH_TO_USDT, flow="standard").max_amount is None
    assert client.validate_address("eth", "0x52908400098527886E0F7030069857D2E4169EE7") == (True, None)
    assert client.validate_address("eth", "0x52908400098527886E0F7030069857D2E4169Ee7") == (False, "Invalid checksum")


def test_arguments_are_checked_before_calling(client):
    with pytest.raises(ValueError):
        client.estimate(**ETH_TO_USDT, to_amount=Decimal(40))  # a to_amount is a reverse quote
    with pytest.raises(TypeError):
        client.estimate(**ETH_TO_USDT, from_amount=0.02)
    with pytest.raises(ValueError):
        client.create_exchange(**ETH_TO_USDT, address="0x0", from_amount=Decimal(1))  # fixed-rate needs a rate id


def test_payout_through_an_exchange_reaches_the_owner(client, sandbox, chain):
    owner = Account.create().address
    quote, exchange = _create(client, owner)
    assert exchange.to_amount == Decimal(40) and exchange.from_amount == quote.from_amount
    assert exchange.payout_address == owner and exchange.payin_extra_id is None
    assert client.exchange_status(exchange.id).status == "waiting"
    chain.send_eth(chain.host_wallet, exchange.payin_address, exchange.from_amount)  # the host wallet funds it
    seen = []
    while not (status := client.exchange_status(exchange.id)).terminal:
        seen.append(status.status)
    assert seen == ["confirming", "exchanging", "sending"] and status.status == "finished"
    assert status.amount_to == Decimal(40) and status.payout_hash
    assert chain.balance_usdt(owner) == Decimal(40)


def test_expired_quote_is_refused(client, clock):
    quote = client.estimate(**ETH_TO_USDT, from_amount=Decimal("0.02"))
    clock.advance(timedelta(minutes=5))
    with pytest.raises(ProviderError) as raised:
        client.create_exchange(**ETH_TO_USDT, address=Account.create().address, from_amount=Decimal("0.02"),
                               rate_id=quote.rate_id)
    assert (raised.value.status, raised.value.code) == (400, "rate_id_not_found_or_expired")


def test_lost_creation_answer_is_outcome_unknown_and_the_exchange_can_be_found(sandbox):
    owner = Account.create().address
    sandbox.fail_next("/v2/exchange", method="POST", delay=0.6)
    with ChangeNowClient(sandbox.base_url, KEY, timeout=0.3, backoff=0.01) as client:
        quote = client.estimate(**ETH_TO_USDT, to_amount=Decimal(40), type_="reverse")
        with pytest.raises(OutcomeUnknown):
            client.create_exchange(**ETH_TO_USDT, address=owner, to_amount=Decimal(40), type_="reverse",
                                   rate_id=quote.rate_id, user_id="payout-31")
        assert [c.method for c in sandbox.calls].count("POST") == 1  # never blindly repeated
        [found] = client.list_exchanges(date_from=sandbox.clock.now() - timedelta(minutes=1))
        assert found.payout_address == owner and found.payout_expected_amount == Decimal(40)
        assert found.user_id == "payout-31" and found.payin_currency == "eth"
        assert client.exchange_status(found.ids[0]).payin_address == found.payin_address  # requestId


@contextmanager
def _serving(app):
    server = LoopbackServer(app, "changenow-docs")
    server.start()
    try:
        yield server.origin
    finally:
        server.stop()


def test_the_documented_list_item_parses(repo_root):
    """ChangeNOW's documented `GET /v2/exchanges` page, served as is over loopback HTTP."""
    page = (repo_root / "tests" / "data" / "changenow-list-exchanges.json").read_bytes()
    asked = []

    def app(request: Request) -> Response:
        asked.append(request.query)
        return Response(200, page)

    with _serving(app) as origin, ChangeNowClient(origin, KEY) as client:
        [item] = client.list_exchanges(date_from=datetime(2026, 11, 30, 9, tzinfo=timezone.utc))
        with pytest.raises(ValueError):
            client.list_exchanges(limit=100)  # "bigger than 0 and less than 100"
    assert asked == [{"limit": "99", "offset": "0", "dateFrom": "2026-11-30T09:00:00.000Z"}]
    assert item.ids == ("a1b2c3d4e5f607", "7f3c9d2a-5b1e-4c8f-9a6d-2e4b8c1f0a37")
    assert item.status == "finished" and item.created_at == datetime(2026, 11, 30, 9, 12, 41, 533000, timezone.utc)
    assert (item.payin_currency, item.payin_address, item.payin_expected_amount) == (
        "eth", "0x9E0c4A1F3f8B1aD52d6f0c3b7E4a8C2d1B5e6F70", Decimal("0.0168528"))
    assert (item.payout_currency, item.payout_address, item.payout_expected_amount, item.payout_amount) == (
        "usdt", "0x3F5CE5FBFe3E9af3971dD833D26bA9b5C936f0bE", Decimal(40), Decimal(40))
    assert item.user_id == "telepay-payout-31"


def test_a_list_item_in_another_shape_is_unavailable_not_a_crash():
    def app(request: Request) -> Response:  # by-id's shape, which the list does not answer in
        return Response(200, b'{"exchanges": [{"id": "x", "status": "waiting", "payinAddress": "0x1"}]}')

    with _serving(app) as origin, ChangeNowClient(origin, KEY, retries=0) as client:
        with pytest.raises(ProviderUnavailable):
            client.list_exchanges()


def test_creation_5xx_is_outcome_unknown_but_429_is_retried(client, sandbox):
    owner = Account.create().address
    sandbox.fail_next("/v2/exchange", method="POST", status=500)
    with pytest.raises(OutcomeUnknown):
        _create(client, owner)
    sandbox.fail_next("/v2/exchange", method="POST", status=429, count=2)
    _, exchange = _create(client, owner)
    assert [c.status for c in sandbox.calls if c.method == "POST"] == [500, 429, 429, 200]
    assert exchange.id in sandbox.exchanges


def test_unreachable_provider_is_unavailable_not_unknown():
    with ChangeNowClient(f"http://127.0.0.1:{free_port()}", KEY, retries=1, backoff=0.01) as client:
        with pytest.raises(ProviderUnavailable):
            client.create_exchange(**ETH_TO_USDT, address="0x0", to_amount=Decimal(40), type_="reverse",
                                   rate_id="r")


def test_status_reads_are_retried(client, sandbox):
    _, exchange = _create(client, Account.create().address)
    sandbox.fail_next("/v2/exchange/by-id", status=503, count=2)
    assert client.exchange_status(exchange.id).status == "waiting"


def test_wrong_key_is_refused_without_showing_it(sandbox, caplog):
    with ChangeNowClient(sandbox.base_url, "bad-" + KEY, backoff=0.01) as client, \
            caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        client.range(**ETH_TO_USDT)
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")
    assert KEY not in str(raised.value) and KEY not in caplog.text and KEY not in repr(client)


def test_rate_limit_is_absorbed_by_retries(sandbox, client):
    sandbox.fail_next("/v2/exchange/range", status=429, count=3, retry_after=0)
    assert client.range(**ETH_TO_USDT).min_amount == Decimal("0.004")
