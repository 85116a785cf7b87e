"""Recording a batch of IPNs in one statement: each delivery gets the answer it would get on its
own, whatever else shares its batch, and a batch is stored whole or not at all."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select

from telepay.api.schemas import IpnIn
from telepay.errors import Conflict, NotFound
from telepay.models import Channel, Invoice, InvoiceKind, Job, Payment, PaymentEvent, Tier
from telepay.services.ipn import IpnDelivery, record_ipns, record_ipns_committed
from tests.api.conftest import raw_json

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def orders(session_factory):
    with session_factory.begin() as session:
        channel = Channel(key="batchkey", owner_user_id=77, open_chat_id=-1001, closed_chat_id=-1002,
                          open_title="News", closed_title="VIP")
        channel.tiers.append(Tier(number=1, price_usd=Decimal("10.00"), days=30))
        session.add(channel)
        session.flush()
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for order_id in ids:
            session.add(Invoice(id=order_id, kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                                tier_id=channel.tiers[0].id, buyer_user_id=5, price_usd=Decimal("10.00"), days=30))
    return ids


def delivery(order_id: str, payment_id: str, status: str, pay_amount: str = "0.00612") -> IpnDelivery:
    body = {"payment_id": int(payment_id), "payment_status": status, "order_id": order_id,
            "pay_amount": Decimal(pay_amount), "price_amount": Decimal("10.0"), "pay_currency": "eth",
            "order_description": "Подписка ✓"}
    return IpnDelivery(IpnIn.model_validate(body), body, raw_json(body).decode())


def stored(session_factory):
    with session_factory() as session:
        events = sorted((e.provider_payment_id, e.status) for e in session.scalars(select(PaymentEvent)))
        payments = {p.provider_payment_id: (p.invoice_id, p.status.value, p.pay_amount)
                    for p in session.scalars(select(Payment))}
        jobs = sorted(j.dedupe_key for j in session.scalars(select(Job)))
    return events, payments, jobs


def test_every_delivery_in_a_batch_gets_its_own_answer(session_factory, orders):
    a, b, c = orders
    with session_factory.begin() as session:
        session.add(Payment(provider_payment_id="300", invoice_id=c, status="waiting"))
    batch = [
        delivery(a, "100", "waiting", "0.000000015"),
        delivery(a, "100", "waiting"),           # a copy in the same batch
        delivery(a, "100", "confirming"),        # the next status of the same payment
        delivery("no-such-order", "101", "waiting"),
        delivery(b, "102", "waiting"),
        delivery(a, "102", "confirming"),        # payment 102 came first with order b
        delivery(a, "300", "finished"),          # payment 300 is stored with order c
        delivery(c, "300", "finished"),
    ]
    with session_factory.begin() as session:
        outcomes = record_ipns(session, batch, NOW)
    assert outcomes[:3] == ["accepted", "duplicate", "accepted"]
    assert isinstance(outcomes[3], NotFound) and outcomes[3].code == "unknown_order"
    assert outcomes[4] == "accepted"
    assert isinstance(outcomes[5], Conflict) and outcomes[5].code == "payment_order_mismatch"
    assert isinstance(outcomes[6], Conflict)
    assert outcomes[7] == "accepted"

    events, payments, jobs = stored(session_factory)
    assert events == [("100", "confirming"), ("100", "waiting"), ("102", "waiting"), ("300", "finished")]
    assert jobs == ["100:confirming", "100:waiting", "102:waiting", "300:finished"]
    # One payment per id, as first delivered, amounts to the last digit.
    assert payments["100"] == (a, "waiting", Decimal("0.000000015"))
    assert payments["102"][:2] == (b, "waiting") and payments["300"][0] == c

    # The same batch again is all repeats (or the same refusals) and stores nothing more.
    with session_factory.begin() as session:
        again = record_ipns(session, batch, NOW)
    assert [o if isinstance(o, str) else o.code for o in again] == [
        "duplicate", "duplicate", "duplicate", "unknown_order", "duplicate", "payment_order_mismatch",
        "payment_order_mismatch", "duplicate"]
    assert stored(session_factory) == (events, payments, jobs)


def test_the_stored_event_keeps_the_raw_body_and_every_digit(session_factory, orders):
    sent = delivery(orders[0], "7", "waiting", "1e-7")
    with session_factory.begin() as session:
        record_ipns(session, [sent], NOW)
    with session_factory() as session:
        event = session.scalars(select(PaymentEvent)).one()
        job = session.scalars(select(Job)).one()
    assert event.raw_body == sent.raw and "Подписка ✓" in event.raw_body
    assert event.body["pay_amount"] == "1E-7" and event.received_at == NOW
    assert job.payload == {"provider_payment_id": "7", "event_id": event.id} and job.run_at == NOW


def test_a_committed_batch_is_visible_at_once_and_leaves_the_connection_as_it_found_it(
        engine, session_factory, orders):
    with engine.connect() as connection:
        outcomes = record_ipns_committed(connection, [delivery(orders[0], "8", "waiting"),
                                                      delivery(orders[1], "9", "waiting")], NOW)
        assert outcomes == ["accepted", "accepted"]
        assert len(stored(session_factory)[1]) == 2  # another connection sees it: it committed
        assert connection.connection.driver_connection.autocommit is False


def test_a_failing_batch_stores_nothing_and_the_connection_recovers(engine, session_factory, orders):
    too_long = delivery(orders[0], "11", "waiting")
    # The schema bounds every field; one that slips past it makes the statement fail.
    bad = IpnDelivery(too_long.ipn.model_copy(update={"pay_currency": "x" * 40}), too_long.body, too_long.raw)
    with engine.connect() as connection:
        with pytest.raises(Exception, match="value too long"):
            record_ipns_committed(connection, [delivery(orders[0], "10", "waiting"), bad], NOW)
        assert stored(session_factory) == ([], {}, [])
        assert record_ipns_committed(connection, [delivery(orders[0], "10", "waiting")], NOW) == ["accepted"]


def test_batches_commit_on_connections_sqlalchemys_own_ping_has_used(database_url, session_factory, orders):
    # SQLAlchemy's pool_pre_ping leaves a transaction open on the connection it hands out; a
    # batch sent into it would be rolled back when the connection is returned.
    pinged = create_engine(database_url, pool_size=1, max_overflow=0, pool_pre_ping=True)
    try:
        for n in range(3):
            with pinged.connect() as connection:
                batch = [delivery(orders[0], str(20 + n), "waiting")]
                assert record_ipns_committed(connection, batch, NOW) == ["accepted"]
    finally:
        pinged.dispose()
    assert sorted(stored(session_factory)[1]) == ["20", "21", "22"]


def test_a_batch_refuses_to_join_a_transaction(engine, orders):
    with engine.connect() as connection:
        connection.execute(select(1))  # SQLAlchemy has begun a transaction
        with pytest.raises(RuntimeError, match="outside any transaction"):
            record_ipns_committed(connection, [delivery(orders[0], "30", "waiting")], NOW)
