"""The bot's services without Telegram: parsing owners' input and links, applying a draft with its
audit trail, the repost timer's one-job-per-slot rule, and the owner's summary."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.clock import ManualClock
from telepay.errors import Conflict, InvalidInput
from telepay.models import AuditLog, Channel, ChannelStatus, Job
from telepay.services.channels import ChatInfo, register_pair
from telepay.services.invoices import parse_donation, parse_payload
from telepay.services.jobs import JobQueue
from telepay.services.posts import RepostTimer
from telepay.services.setup import PRICE_MAX, PRICE_MIN, SetupService, parse_days, parse_usd
from telepay.services.summary import channel_summary

OPEN, CLOSED = ChatInfo(-1001, "News", "news"), ChatInfo(-1002, "VIP", None)
TRX = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"


@pytest.mark.parametrize("text, amount", [("5", "5.00"), ("$9.99", "9.99"), ("1,234.5", "1234.50"),
                                          ("9999.99", "9999.99"), ("1 usd", "1.00")])
def test_prices_are_read_as_cents(text, amount):
    assert parse_usd(text, PRICE_MIN, PRICE_MAX, "price") == Decimal(amount)


@pytest.mark.parametrize("text", ["0.99", "10000", "5.001", "abc", "-5", "1e3", ""])
def test_bad_prices_name_the_limits(text):
    with pytest.raises(InvalidInput, match=r"\$1\.00 and \$9,999\.99"):
        parse_usd(text, PRICE_MIN, PRICE_MAX, "price")


@pytest.mark.parametrize("text", ["0", "3651", "x", "1.5"])
def test_bad_durations(text):
    with pytest.raises(InvalidInput, match="3,650"):
        parse_days(text)


@pytest.mark.parametrize("payload, parsed", [("abcDEF1234-1", ("abcDEF1234", 1)),
                                             ("abcDEF1234-donate", ("abcDEF1234", "donate"))])
def test_links_name_a_channel_and_a_tier_only(payload, parsed):
    assert parse_payload(payload) == parsed


@pytest.mark.parametrize("payload", ["abcDEF1234", "abcDEF1234-0", "abcDEF1234-1-5.00", "x-1", "", "a" * 70])
def test_garbled_links(payload):
    with pytest.raises(InvalidInput):
        parse_payload(payload)


@pytest.mark.parametrize("typed, ok", [("4.99", True), ("9999.99", True), ("12.5", True), ("12.", True),
                                       ("4.98", False), ("0", False), ("", False), ("10000", False)])
def test_donation_limits(typed, ok):
    if ok:
        assert parse_donation(typed) >= Decimal("4.99")
    else:
        with pytest.raises(InvalidInput, match=r"\$4\.99 to \$9,999\.99"):
            parse_donation(typed)


def test_a_pair_belongs_to_whoever_registered_it_first(session_factory):
    with session_factory.begin() as session:
        first = register_pair(session, 1, OPEN, CLOSED)
    with session_factory.begin() as session:
        assert register_pair(session, 1, OPEN, CLOSED).id == first.id  # pressing twice is harmless
        with pytest.raises(Conflict, match="someone else"):
            register_pair(session, 2, ChatInfo(-1003, "Other", "other"), CLOSED)


def test_saving_a_draft_applies_everything_at_once_and_audits_the_address(session_factory):
    jobs = JobQueue(session_factory)
    setup = SetupService(jobs, ManualClock(), address_validator=None)
    with session_factory.begin() as session:
        channel_id = register_pair(session, 1, OPEN, CLOSED).id
    draft = {"tiers": {"1": {"price": "5.00", "days": 30}, "2": {"price": "9.00"}},
             "currency": "usdt:trx", "address": TRX}
    with session_factory.begin() as session, pytest.raises(InvalidInput, match="Tier 2 needs"):
        setup.review(session, channel_id, 1, draft)
    draft["tiers"]["2"]["days"] = 90
    with session_factory.begin() as session:
        review = setup.review(session, channel_id, 1, draft)
        assert review.address_change == (None, TRX)
        with pytest.raises(InvalidInput, match="confirm"):
            setup.apply(session, channel_id, 1, draft, address_confirmed=False)
    with session_factory.begin() as session, pytest.raises(Exception):
        setup.review(session, channel_id, 2, draft)  # not the owner
    with session_factory.begin() as session:
        applied = setup.apply(session, channel_id, 1, draft, address_confirmed=True)
    assert applied.activated and applied.reposted
    with session_factory() as session:
        channel = session.get(Channel, channel_id)
        assert channel.status == ChannelStatus.ACTIVE
        assert [(t.number, t.price_usd, t.days) for t in channel.tiers] == [
            (1, Decimal("5.00"), 30), (2, Decimal("9.00"), 90)]
        assert sorted(session.scalars(select(AuditLog.action))) == ["payout_address.change", "settings.update"]
        assert session.scalars(select(Job.kind)).all() == ["broadcast.post"]
    with session_factory.begin() as session, pytest.raises(InvalidInput, match="not a valid"):
        setup.review(session, channel_id, 1, {"address": "0x0000"})


def test_finding_7_a_forged_tier_4_in_the_draft_never_blocks_saving(session_factory):
    """The attack: forged `cfg:<id>:t:4:price` / `:days` buttons put a tier 4 in the owner's draft;
    saving it broke on the database's tier-number check, so nothing could be saved until Discard."""
    setup = SetupService(JobQueue(session_factory), ManualClock(), address_validator=None)
    with session_factory.begin() as session:
        channel_id = register_pair(session, 1, OPEN, CLOSED).id
    draft = {"tiers": {"4": {"price": "5.00", "days": 30}, "1": {"price": "7.00", "days": 10}, "0": None}}
    with session_factory.begin() as session:
        review = setup.review(session, channel_id, 1, draft)
        assert review.changes == ["tiers"]
        setup.apply(session, channel_id, 1, draft, address_confirmed=False)
    with session_factory() as session:
        tiers = session.get(Channel, channel_id).tiers
        assert [(t.number, t.price_usd, t.days) for t in tiers] == [(1, Decimal("7.00"), 10)]
    with session_factory.begin() as session, pytest.raises(InvalidInput, match="no changes"):
        setup.review(session, channel_id, 1, {"tiers": {"4": {"price": "5.00", "days": 30}}})


def test_the_repost_timer_queues_each_slot_once(session_factory):
    clock = ManualClock()
    jobs = JobQueue(session_factory, clock=clock)
    with session_factory.begin() as session:
        channel = register_pair(session, 1, OPEN, CLOSED)
        channel.status, channel.next_post_at = ChannelStatus.ACTIVE, clock.now() + timedelta(hours=1)
    timer = RepostTimer(session_factory, jobs, clock)
    assert timer.run_once() == 0
    clock.advance(timedelta(hours=1, seconds=1))
    assert timer.run_once() == 1
    assert timer.run_once() == 0  # same slot: already queued (a restart or a second process)
    with session_factory() as session:
        assert len(session.scalars(select(Job).where(Job.kind == "broadcast.post")).all()) == 1


def test_an_empty_summary(session_factory):
    with session_factory.begin() as session:
        channel_id = register_pair(session, 1, OPEN, CLOSED).id
    with session_factory() as session:
        summary = channel_summary(session, channel_id, datetime.now(timezone.utc))
    assert (summary.subscriptions_sold, summary.gross_usd, summary.active_subscribers) == (0, Decimal(0), 0)
