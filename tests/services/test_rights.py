"""The periodic rights check and the delivery deadline (issue 13, finding 1), against the sandbox
Telegram: a pair missing a right is paused and its owner and the operators told; when the right
is back it resumes and its delivery queue is let in; a buyer still waiting after 48 hours goes to
review with an operator alert naming the payment and the commands that act on it."""

from __future__ import annotations

import asyncio
import re
import shlex
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from telegram.ext import ExtBot

from telepay.cli import main

from telepay.models import (
    Channel, ChannelStatus, Invite, InviteStatus, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus,
    Subscription, Tier,
)
from telepay.services.delivery import DELIVERY_DEADLINE, delivery_queue
from telepay.services.fulfilment import INVITE_JOB
from telepay.services.messages import ALERT_JOB, DIRECT_JOB
from telepay.services.rights import ChannelRights
from tests.services.lifecycle_rig import TOKEN, Rig


@pytest.fixture
def rig(session_factory):
    made = Rig(session_factory)
    yield made
    made.close()


def check_all(rig: Rig) -> None:
    async def run() -> None:
        bot = ExtBot(TOKEN, base_url=rig.telegram.base_url)
        async with bot:
            await ChannelRights(rig.session_factory, rig.jobs, rig.clock, bot).check_all()
    asyncio.run(run())


def review_overdue(rig: Rig) -> int:
    async def run() -> int:
        bot = ExtBot(TOKEN, base_url=rig.telegram.base_url)
        async with bot:
            return ChannelRights(rig.session_factory, rig.jobs, rig.clock, bot).review_overdue()
    return asyncio.run(run())


def waiting_buyer(rig: Rig, channel_id: int, closed_chat_id: int, since) -> tuple[Invite, str]:
    with rig.session_factory.begin() as session:
        tier = session.scalars(select(Tier).where(Tier.channel_id == channel_id)).first()
        user_id = 900_000 + int(uuid.uuid4().int % 10_000)
        invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel_id, tier_id=tier.id,
                          buyer_user_id=user_id, price_usd=Decimal("5.00"), days=30, status=InvoiceStatus.COMPLETED)
        session.add(invoice)
        session.flush()
        session.add(Payment(provider_payment_id=f"np-{uuid.uuid4().hex[:8]}", invoice_id=invoice.id,
                            status=PaymentStatus.FINISHED, pay_currency="eth", price_amount=Decimal("5.00"),
                            fulfilled_at=since))  # fulfilled: the subscription and the waiting invite are its doing
        subscription = Subscription(channel_id=channel_id, user_id=user_id, started_at=since,
                                    expires_at=since + timedelta(days=30), last_invoice_id=invoice.id)
        session.add(subscription)
        session.flush()
        invite = Invite(subscription_id=subscription.id, invoice_id=invoice.id, chat_id=closed_chat_id,
                        user_id=user_id, name=invoice.id.replace("-", "")[:32], status=InviteStatus.WAITING,
                        waiting_since=since)
        session.add(invite)
        session.flush()
        return invite, invoice.id


def texts(rig: Rig, kind: str) -> list[str]:
    return [job.payload["text"] for job in rig.jobs_of(kind)]


def test_finding_1_the_periodic_check_pauses_resumes_and_lets_the_queue_in(rig):
    channel_id, owner, closed = rig.channel("Gail")
    rig.telegram.add_admin(closed, rig.telegram.bot, can_restrict_members=False)  # no update needed
    check_all(rig)
    with rig.session_factory() as session:
        channel = session.get(Channel, channel_id)
        assert channel.status == ChannelStatus.LOST_RIGHTS and "Ban users" in channel.status_reason
    assert any("is paused" in t and "Ban users" in t for t in texts(rig, DIRECT_JOB))
    assert any(f"Channel {channel_id}" in t and "paused" in t for t in texts(rig, ALERT_JOB))
    check_all(rig)  # still missing: told once
    assert len([t for t in texts(rig, DIRECT_JOB) if "is paused" in t]) == 1

    invite, invoice_id = waiting_buyer(rig, channel_id, closed.id, rig.clock.now())
    with rig.session_factory() as session:
        assert [w.invoice_id for w in delivery_queue(session)] == [invoice_id]

    rig.telegram.add_admin(closed, rig.telegram.bot)  # every right back
    check_all(rig)
    with rig.session_factory() as session:
        assert session.get(Channel, channel_id).status == ChannelStatus.ACTIVE
        assert session.get(Invite, invite.id).status == InviteStatus.CREATED
        assert delivery_queue(session) == []
    assert [j.payload for j in rig.jobs_of(INVITE_JOB)] == [{"invoice_id": invoice_id}]
    assert any("live again" in t for t in texts(rig, DIRECT_JOB))


def test_finding_1_a_buyer_waiting_past_the_deadline_goes_to_review_with_an_alert(rig, database_url, tmp_path,
                                                                                   monkeypatch):
    channel_id, _, closed = rig.channel("Hope")
    with rig.session_factory.begin() as session:
        session.get(Channel, channel_id).status = ChannelStatus.LOST_RIGHTS
    old, old_invoice = waiting_buyer(rig, channel_id, closed.id,
                                     rig.clock.now() - DELIVERY_DEADLINE - timedelta(minutes=1))
    new, _ = waiting_buyer(rig, channel_id, closed.id, rig.clock.now() - timedelta(hours=1))

    assert review_overdue(rig) == 1

    with rig.session_factory() as session:
        assert session.get(Invite, old.id).status == InviteStatus.REVIEW
        assert session.get(Invite, new.id).status == InviteStatus.WAITING
        payment = session.scalars(select(Payment).where(Payment.invoice_id == old_invoice)).one()
        assert {w.status for w in delivery_queue(session)} == {InviteStatus.REVIEW, InviteStatus.WAITING}
    [alert] = [t for t in texts(rig, ALERT_JOB) if "Refund due" in t]
    assert old_invoice in alert and payment.provider_payment_id in alert
    assert any("refund" in job.payload["text"] for job in rig.jobs_of(DIRECT_JOB)
               if job.payload["chat_id"] == old.user_id)

    # The commands the alert names act on this buyer: run them as written, the reason filled in.
    commands = re.findall(r"`telepay ([^`]+)`", alert)
    assert commands == [f'payments resolve {payment.id} --action refunded --reason "..."',
                        f"subscribers show {old.user_id}"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TELEPAY_DATA_DIR", str(tmp_path / "var"))
    shown = CliRunner().invoke(main, shlex.split(commands[1]))
    assert shown.exit_code == 0 and old_invoice in shown.output, shown.output
    resolved = CliRunner().invoke(main, shlex.split(commands[0].replace("...", "refunded by hand")))
    assert resolved.exit_code == 0 and f"payment {payment.id}" in resolved.output, resolved.output
    with rig.session_factory() as session:
        assert [(w.invite_id, w.status) for w in delivery_queue(session)] == [(new.id, InviteStatus.WAITING)]


def test_finding_1_a_buyer_in_review_is_let_in_only_when_the_operator_says_so(rig, database_url, tmp_path,
                                                                              monkeypatch):
    """Past the deadline the buyer was promised a refund: when the pair resumes they are not let
    in by themselves; the operators are told, and `resolve --action deliver` lets them in."""
    channel_id, _, closed = rig.channel("Iris")
    with rig.session_factory.begin() as session:
        session.get(Channel, channel_id).status = ChannelStatus.LOST_RIGHTS
    old, old_invoice = waiting_buyer(rig, channel_id, closed.id,
                                     rig.clock.now() - DELIVERY_DEADLINE - timedelta(minutes=1))

    assert review_overdue(rig) == 1
    with rig.session_factory() as session:
        payment = session.scalars(select(Payment).where(Payment.invoice_id == old_invoice)).one()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TELEPAY_DATA_DIR", str(tmp_path / "var"))
    deliver = ["payments", "resolve", str(payment.id), "--action", "deliver", "--reason", "owner fixed the rights"]
    paused = CliRunner().invoke(main, deliver)
    assert paused.exit_code == 2 and "once it is live again" in paused.output, paused.output
    with rig.session_factory() as session:
        assert session.get(Invite, old.id).status == InviteStatus.REVIEW  # refused: nothing changed
    assert rig.jobs_of(INVITE_JOB) == []

    check_all(rig)  # every right is there: the pair resumes
    with rig.session_factory() as session:
        assert session.get(Channel, channel_id).status == ChannelStatus.ACTIVE
        assert session.get(Invite, old.id).status == InviteStatus.REVIEW
    assert rig.jobs_of(INVITE_JOB) == []
    [alert] = [t for t in texts(rig, ALERT_JOB) if "live again" in t]
    assert re.findall(r"`telepay ([^`]+)`", alert) == [
        f'payments resolve {payment.id} --action deliver --reason "..."']

    done = CliRunner().invoke(main, deliver)
    assert done.exit_code == 0 and f"payment {payment.id}" in done.output, done.output
    with rig.session_factory() as session:
        assert session.get(Invite, old.id).status == InviteStatus.CREATED
        assert delivery_queue(session) == []
    assert [j.payload for j in rig.jobs_of(INVITE_JOB)] == [{"invoice_id": old_invoice}]
    again = CliRunner().invoke(main, deliver)
    assert again.exit_code == 2 and "no buyer waiting" in again.output, again.output
    assert len(rig.jobs_of(INVITE_JOB)) == 1
