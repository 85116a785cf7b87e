"""Finding an exchange whose creation answer was lost, as ChangeNOW documents its list: with the
partner field `userId` honoured and with it dropped/ignored, and never adopting one that is not
provably this payout's (another tag, address or amount, or created before the intent)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from telepay.clients.changenow import ChangeNowClient
from telepay.models import PayoutStatus
from telepay_sandbox.changenow import ChangeNowSandbox
from tests.services.payouts.conftest import FEE, KEY, World

SALE = Decimal("60")


@pytest.fixture(params=[True, False], ids=["userId-honoured", "userId-ignored"])
def world(request, session_factory, chain, clock):
    with ChangeNowSandbox(KEY, chain, clock=clock, rate_limits=None, partner_fields=request.param) as changenow:
        built = World(session_factory, chain, changenow, clock)
        yield built
        built.client.close()


def _creations(world) -> int:
    return sum(1 for c in world.changenow.calls if c.method == "POST" and c.path == "/v2/exchange")


def _funded_once(world, channel, payout_id: int):
    payout = world.payout(payout_id)
    assert payout.status == PayoutStatus.FINISHED, payout.last_error
    assert len(world.host_transfers(payout.payin_address, "eth")) == 1  # counted on the chain
    assert len(world.chain.transfers_to(channel.payout_address, "usdt")) == 1
    return payout


def _foreign(world, address: str, eth: Decimal, user_id: str | None = None) -> str:
    """An exchange someone else made (another payout, a person using the same key)."""
    quote = world.client.estimate("eth", "usdt", "eth", "eth", from_amount=eth)
    return world.client.create_exchange(from_currency="eth", to_currency="usdt", from_network="eth",
                                        to_network="eth", address=address, from_amount=eth,
                                        rate_id=quote.rate_id, user_id=user_id).id


def test_a_lost_creation_answer_finds_its_one_exchange_and_funds_it_once(world):
    world.runner.exchanges.client = ChangeNowClient(world.changenow.base_url, KEY, timeout=0.3, retries=0)
    world.changenow.fail_next("/v2/exchange", method="POST", delay=1.0)  # created, answer held back
    channel = world.channel("usdt", "eth")
    payment_id = world.pay(channel, SALE)
    world.drain()
    payout = _funded_once(world, channel, world.payout_of(payment_id).id)
    assert _creations(world) == 1
    assert payout.exchange_id in world.changenow.exchanges  # the id by-id answers to


def test_an_exchange_that_is_not_this_payouts_is_never_adopted(world):
    channel = world.channel("usdt", "eth")
    share_eth = world.exchanges.eth_worth(SALE * (100 - FEE) / 100)
    before = _foreign(world, channel.payout_address, share_eth)  # right address and amount, too early
    world.clock.advance(timedelta(minutes=10))
    stranger = world.chain.new_account().address
    others = [
        _foreign(world, stranger, share_eth),                                  # another address
        _foreign(world, channel.payout_address, share_eth + Decimal("0.001")),  # another amount
    ]
    if world.changenow.partner_fields:  # only a kept tag can name another payout
        others.append(_foreign(world, channel.payout_address, share_eth, user_id="telepay-payout-999999"))
    # This payout's own creation is refused with a 5xx: nothing made, but the outcome is unknown,
    # so the runner looks before it creates; it must not take any of the look-alikes.
    world.changenow.fail_next("/v2/exchange", method="POST", status=500)
    payment_id = world.pay(channel, SALE)
    world.drain()
    payout = _funded_once(world, channel, world.payout_of(payment_id).id)
    assert payout.exchange_id not in [before, *others]
    assert payout.from_amount == share_eth
    for exchange_id in [before, *others]:
        exchange = world.changenow.exchange(exchange_id)
        assert not world.chain.transfers_to(exchange.payin_address)  # never funded


def test_two_payouts_alike_never_share_one_exchange(world):
    """Same owner address, same amount, both answers lost: each payout gets its own exchange."""
    world.runner.exchanges.client = ChangeNowClient(world.changenow.base_url, KEY, timeout=0.3, retries=0)
    channel = world.channel("usdt", "eth")
    world.changenow.fail_next("/v2/exchange", method="POST", delay=1.0, count=2)
    first, second = (world.payout_of(world.pay(channel, SALE)) for _ in range(2))
    world.drain()
    done = [world.payout(p.id) for p in (first, second)]
    assert all(p.status == PayoutStatus.FINISHED for p in done), [p.last_error for p in done]
    assert done[0].exchange_id != done[1].exchange_id
    assert len(world.chain.transfers_to(channel.payout_address, "usdt")) == 2
    assert _creations(world) == 2


def test_each_rule_alone_rules_a_listed_exchange_out(repo_root):
    """The match itself, on the documented item: a list that ignored dateFrom or userId must
    still not get a look-alike adopted."""
    import dataclasses
    import json
    from datetime import datetime, timezone

    from telepay.clients.changenow import ListedExchange
    from telepay.models import Payout, PayoutKind
    from telepay.services.payouts.exchanges import PayoutExchanges

    page = json.loads((repo_root / "tests" / "data" / "changenow-list-exchanges.json").read_text(),
                      parse_float=Decimal)
    item = ListedExchange.from_item(page["exchanges"][0])
    payout = Payout(id=31, kind=PayoutKind.INSTANT, funding_asset="ETH", to_currency="usdt", to_network="eth",
                    to_address=item.payout_address.lower(), from_amount=Decimal("0.01685280"))
    since = datetime(2026, 11, 30, 9, 10, tzinfo=timezone.utc)
    match = PayoutExchanges.is_this_payouts
    assert match(item, payout, since)
    assert match(dataclasses.replace(item, user_id=None), payout, since)  # no partner fields: no tag
    assert not match(dataclasses.replace(item, user_id="telepay-payout-32"), payout, since)
    assert not match(item, payout, since + timedelta(minutes=5))  # created before the intent
    assert not match(dataclasses.replace(item, payout_address="0x" + "1" * 40), payout, since)
    assert not match(dataclasses.replace(item, payin_expected_amount=Decimal("0.0168529")), payout, since)
    assert not match(dataclasses.replace(item, payin_currency="usdt"), payout, since)
    assert not match(dataclasses.replace(item, payout_currency="btc"), payout, since)


def test_a_sweep_whose_creation_answer_was_lost_finds_its_reverse_exchange(world):
    """A sweep is created reverse (the USDT to receive is fixed): matched on the payout side."""
    from telepay.models import PayoutKind
    from telepay.models.channels import PayoutStrategy

    world.runner.exchanges.client = ChangeNowClient(world.changenow.base_url, KEY, timeout=0.3, retries=0)
    world.changenow.fail_next("/v2/exchange", method="POST", delay=1.0)
    channel = world.channel("eth", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("1000"))
    world.pay(channel, SALE)
    tick = world.scheduler.run_once()
    world.drain()
    sweep = world.payout(tick.sweep_id)
    assert sweep.kind == PayoutKind.SWEEP and sweep.status == PayoutStatus.FINISHED, sweep.last_error
    assert _creations(world) == 1
    assert len(world.host_transfers(sweep.payin_address, "eth")) == 1
