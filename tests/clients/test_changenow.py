"""ChangeNowClient against the ChangeNOW sandbox and the dev chain, over real loopback HTTP."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
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
        [found] = client.list_exchanges(user_id="payout-31")
    assert found.payout_address == owner and found.expected_amount_to == Decimal(40)


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
