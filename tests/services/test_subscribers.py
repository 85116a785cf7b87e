"""`telepay subscribers show USER`: one Telegram user's rows, by id or @username, against the real
database (a crypto sale run through the payment processor, a Stars payment, an invite, a queued
message), through the service and through the command."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from telepay.cli import main
from telepay.errors import NotFound
from telepay.models import (
    Invite, InviteStatus, Invoice, InvoiceKind, InvoiceStatus, PaymentMethod, StarPayment, StarPaymentStatus,
)
from telepay.services.fulfilment import INVITE_JOB
from telepay.services.messages import DIRECT_JOB, queue_message
from telepay.services.notifications import NOTIFY_JOB
from telepay.services.subscribers import AmbiguousUser, resolve_user, show_user
from tests.services.payments_rig import BUYER, _invoice, _ipn

LINK = "https://t.me/+SECRETjoinlinkABC123"
OTHER = 556


def _sale(session_factory, clock, processor, channel, jobs) -> str:
    """A paid subscription for BUYER (@bob): its invite sent, a message queued, a Stars payment."""
    invoice = _invoice(session_factory, channel)
    for status in ("waiting", "finished"):
        _ipn(session_factory, clock, invoice, "7001", status)
    processor.process("7001")
    with session_factory.begin() as session:
        # The invite the grant made, as its job leaves it once sent.
        invite = session.scalars(select(Invite).where(Invite.invoice_id == invoice)).one()
        invite.link, invite.status = LINK, InviteStatus.SENT
        queue_message(session, jobs, BUYER, "Your subscription ends in 3 days", dedupe_key="t:remind")
        queue_message(session, jobs, OTHER, "someone else's", dedupe_key="t:other")
        stars = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.DONATION, channel_id=channel.id, buyer_user_id=BUYER,
                        buyer_username="Bob", price_usd=Decimal("5.00"), price_stars=250,
                        method=PaymentMethod.STARS, status=InvoiceStatus.COMPLETED)
        session.add(stars)
        session.flush()
        session.add(StarPayment(charge_id="charge-1", user_id=BUYER, stars=250, payload=stars.id, invoice_id=stars.id,
                                status=StarPaymentStatus.FULFILLED, rate_usd=Decimal("0.02"), usd_value=Decimal("5"),
                                raw={}))
    return invoice


def test_show_gathers_every_row_about_the_user(session_factory, clock, processor, channel, jobs):
    invoice = _sale(session_factory, clock, processor, channel, jobs)
    with session_factory() as session:
        view = show_user(session, resolve_user(session, "@BOB"))
    assert view.user_id == BUYER and view.usernames == ["Bob", "bob"]
    assert [(s.channel_id, s.tier, s.status) for s in view.subscriptions] == [(channel.id, 1, "active")]
    assert [(i.invoice_id, i.status, i.link) for i in view.invites] == [(invoice, "sent", LINK)]
    assert {v.method for v in view.invoices} == {"crypto", "stars"}
    assert [(p.rail, p.provider_id, p.status) for p in view.payments] == [
        ("crypto", "7001", "finished"), ("stars", "charge-1", "fulfilled")]
    assert len(view.payouts) == 1 and view.payouts[0].kind == "instant"
    assert view.waiting == []
    kinds = [(j.kind, j.text) for j in view.jobs]
    assert (DIRECT_JOB, "Your subscription ends in 3 days") in kinds
    assert (INVITE_JOB, None) in kinds
    assert all(text != "someone else's" for _, text in kinds)


def test_unknown_and_ambiguous_users(session_factory, clock, processor, channel, jobs):
    _sale(session_factory, clock, processor, channel, jobs)
    with session_factory.begin() as session:
        session.add(Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.DONATION, channel_id=channel.id,
                            buyer_user_id=OTHER, buyer_username="bob", price_usd=Decimal("5.00"),
                            created_at=datetime.now(timezone.utc) + timedelta(hours=1)))
    with session_factory() as session:
        with pytest.raises(AmbiguousUser) as several:
            resolve_user(session, "@bob")
        assert [uid for uid, _ in several.value.candidates] == [OTHER, BUYER]  # newest holder first
        with pytest.raises(NotFound):
            resolve_user(session, "@nobody")
        with pytest.raises(NotFound):
            show_user(session, 999999)


def test_the_command(session_factory, clock, processor, channel, jobs, database_url, monkeypatch, tmp_path):
    _sale(session_factory, clock, processor, channel, jobs)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)

    def run(*args):
        return CliRunner().invoke(main, ["subscribers", "show", *args])

    shown = run(str(BUYER))
    assert shown.exit_code == 0, shown.output
    assert "payments (2):" in shown.output and "charge-1" in shown.output and "7001" in shown.output
    assert LINK not in shown.output and "…ABC123" in shown.output  # masked unless asked
    assert LINK in run(str(BUYER), "--links").output
    missing = run("424242")
    assert missing.exit_code == 1 and "no such user 424242" in missing.output
    with session_factory.begin() as session:
        session.add(Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.DONATION, channel_id=channel.id,
                            buyer_user_id=OTHER, buyer_username="bob", price_usd=Decimal("5.00")))
    several = run("@bob")
    assert several.exit_code == 1 and str(OTHER) in several.output and str(BUYER) in several.output


def test_an_owner_sees_their_channels_and_the_sale_notices_sent_to_them(session_factory, clock, processor, channel,
                                                                         jobs):
    _sale(session_factory, clock, processor, channel, jobs)
    with session_factory() as session:
        view = show_user(session, channel.owner_user_id)
    assert [(c.id, c.title) for c in view.owned] == [(channel.id, "VIP")]
    assert view.jobs and {j.kind for j in view.jobs} == {NOTIFY_JOB}
    assert view.payments == [] and view.subscriptions == []
