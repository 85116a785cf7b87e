"""Fixtures shared by the payment tests: a manual clock, the job queue, the payment processor and
a channel with one tier."""

from __future__ import annotations

from decimal import Decimal

import pytest

from telepay.clock import ManualClock
from telepay.models import Channel, ChannelStatus, Tier
from telepay.services.fulfilment import Fulfilment
from telepay.services.jobs import JobQueue
from telepay.services.payments.processor import PaymentProcessor


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def jobs(session_factory, clock):
    return JobQueue(session_factory, clock=clock)


@pytest.fixture
def processor(session_factory, jobs, clock):
    return PaymentProcessor(session_factory, jobs, clock, fulfilment=Fulfilment(jobs, fee_percent=Decimal(10)),
                            tolerance_percent=Decimal("0.5"))


@pytest.fixture
def channel(session_factory):
    with session_factory.begin() as session:
        channel = Channel(key="chan01key", owner_user_id=77, open_chat_id=-1001, closed_chat_id=-1002,
                          open_title="News", closed_title="VIP", status=ChannelStatus.ACTIVE,
                          payout_currency="usdt", payout_network="trx",
                          payout_address="TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
        channel.tiers.append(Tier(number=1, price_usd=Decimal("10.00"), days=30))
        session.add(channel)
    return channel
