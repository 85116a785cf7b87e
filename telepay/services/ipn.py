"""Recording NOWPayments IPNs: store the event, upsert the payment, queue its processing.

This is all the webhook does, in one transaction; moving money state is the processing job's
work. A repeat of a (payment, status) pair adds nothing: IPNs come twice, late and out of order.
Several IPNs can be recorded by one statement (`record_ipns`): the API's group commit hands a
whole batch of concurrent deliveries to one transaction.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pg8000.legacy
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from telepay.errors import Conflict, NotFound, TelePayError
from telepay.models import PaymentStatus
from telepay.services.ipn_schema import IpnIn
from telepay.services.jobs import insert_jobs_sql

logger = logging.getLogger(__name__)

PROCESS_JOB = "payment.process"

ACCEPTED, DUPLICATE = "accepted", "duplicate"


@dataclass(frozen=True)
class IpnDelivery:
    """One IPN as received: the validated fields, the parsed body and the raw text."""

    ipn: IpnIn
    body: dict[str, Any]
    raw: str

    def row(self, n: int) -> dict[str, Any]:
        ipn = self.ipn
        status = ipn.payment_status

        def amount(value: Decimal | None) -> str | None:
            return None if value is None else str(value)  # as text: jsonb keeps every digit

        return {"n": n, "order_id": ipn.order_id, "payment_id": ipn.payment_id, "status": status,
                "raw": self.raw, "body": self.body, "parent_payment_id": ipn.parent_payment_id,
                "pay_currency": ipn.pay_currency, "pay_amount": amount(ipn.pay_amount),
                "actually_paid": amount(ipn.actually_paid), "price_amount": amount(ipn.price_amount),
                "outcome_amount": amount(ipn.outcome_amount), "outcome_currency": ipn.outcome_currency}


# One round trip for a whole batch of deliveries, passed as one JSON array: look each order up,
# refuse a payment id already tied to another order (in the table or earlier in the batch),
# store the events, upsert the payments and queue their jobs. Each data-modifying CTE feeds the
# next; ON CONFLICT makes concurrent copies of one IPN collapse into one event and one job, and
# `copy` picks the first of several copies inside one batch. A payment belongs to the order it
# was first stored with, or else to the first known order it comes with in the batch. A
# re-deposit (no order id, a parent payment) belongs to its parent's order. A payment first
# heard of with a status we don't know is stored as `waiting` (its event keeps the real text).
# A new event makes the payment's queued, not yet claimed, processing jobs of earlier events
# done (`superseded`): the new event's job reads every event, so they have nothing left to do,
# and the newest status is not kept waiting behind their turns of the worker. (A row a worker
# is claiming right now is skipped, never waited for; that job steps aside when it runs.)
_KNOWN_STATUSES = ", ".join(f"'{status.value}'" for status in PaymentStatus)
_RECORD_SQL = f"""
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        n int, order_id text, payment_id text, status text, raw text, body jsonb, parent_payment_id text,
        pay_currency text, pay_amount numeric, actually_paid numeric, price_amount numeric,
        outcome_amount numeric, outcome_currency text)
), known AS (
    SELECT input.*, COALESCE(inv.id, CASE WHEN input.order_id IS NULL THEN parent.invoice_id END) AS invoice_id,
           p.invoice_id AS paid_order
    FROM input
    LEFT JOIN invoices inv ON inv.id = input.order_id
    LEFT JOIN payments parent ON parent.provider_payment_id = input.parent_payment_id
    LEFT JOIN payments p ON p.provider_payment_id = input.payment_id
), checked AS (
    SELECT known.*, invoice_id IS NOT NULL
           AND invoice_id = COALESCE(paid_order, first_value(invoice_id)
                                   OVER (PARTITION BY payment_id ORDER BY invoice_id IS NULL, n)) AS consistent
    FROM known
), ok AS (
    SELECT checked.*, row_number() OVER (PARTITION BY payment_id, status ORDER BY n) AS copy
    FROM checked WHERE consistent
), event AS (
    INSERT INTO payment_events (provider_payment_id, status, raw_body, body, received_at)
    SELECT payment_id, status, raw, body, CAST(:now AS timestamptz) FROM ok WHERE copy = 1 ORDER BY n
    ON CONFLICT ON CONSTRAINT uq_payment_events_provider_payment_id_status DO NOTHING
    RETURNING id, provider_payment_id, status
), first_event AS (
    SELECT DISTINCT ON (ok.payment_id) ok.*
    FROM ok JOIN event ON event.provider_payment_id = ok.payment_id AND event.status = ok.status
    WHERE ok.copy = 1 ORDER BY ok.payment_id, ok.n
), payment AS (
    INSERT INTO payments (provider_payment_id, invoice_id, parent_payment_id, status, pay_currency, pay_amount,
                          actually_paid, price_amount, outcome_amount, outcome_currency, created_at, updated_at)
    SELECT payment_id, invoice_id, parent_payment_id,
           CASE WHEN status IN ({_KNOWN_STATUSES}) THEN status ELSE 'waiting' END, pay_currency, pay_amount,
           actually_paid, price_amount, outcome_amount, outcome_currency, CAST(:now AS timestamptz),
           CAST(:now AS timestamptz)
    FROM first_event
    ON CONFLICT (provider_payment_id) DO NOTHING
), job AS (
    {insert_jobs_sql('''
    SELECT CAST(:job_kind AS text), jsonb_build_object('provider_payment_id', event.provider_payment_id,
                                                       'event_id', event.id),
           event.provider_payment_id || ':' || event.status, CAST(:now AS timestamptz)
    FROM event''')}
), superseded AS (
    UPDATE jobs SET state = 'done', finished_at = CAST(:now AS timestamptz), updated_at = CAST(:now AS timestamptz)
    WHERE id IN (SELECT queued.id FROM jobs queued JOIN event
                   ON queued.payload->>'provider_payment_id' = event.provider_payment_id
                 WHERE queued.state = 'queued' AND queued.kind = :job_kind
                   AND CAST(queued.payload->>'event_id' AS bigint) < event.id
                 FOR UPDATE OF queued SKIP LOCKED)
)
SELECT checked.n, checked.invoice_id IS NOT NULL, checked.consistent, event.id
FROM checked
LEFT JOIN ok ON ok.n = checked.n AND ok.copy = 1
LEFT JOIN event ON event.provider_payment_id = ok.payment_id AND event.status = ok.status
ORDER BY checked.n
"""
_PREPARED = "telepay.ipn.record"


def _record_statement(pooled) -> pg8000.legacy.PreparedStatement:
    """The recording statement, prepared once per database connection and kept with it.

    Through the driver's ordinary execute this statement cost more than everything else an IPN
    does: pg8000 rescans the whole SQL text on every execute to find its parameters, and the
    server plans it afresh. A prepared statement is scanned, parsed and planned once per
    connection. The pool clears `info` when it drops a connection, so a statement never
    outlives the connection it was prepared on; a rollback does not undo it.
    """
    statement = pooled.info.get(_PREPARED)
    if statement is None:
        statement = pg8000.legacy.PreparedStatement(pooled.driver_connection, _RECORD_SQL)
        pooled.info[_PREPARED] = statement
    return statement


def _run(statement: pg8000.legacy.PreparedStatement, deliveries: list[IpnDelivery], now: datetime):
    rows = [delivery.row(n) for n, delivery in enumerate(deliveries)]
    # Decimals (the body's numbers) as strings: the stored copy loses no digits (the raw body is
    # kept too). `default` is called only for them, so the encoder stays in C for the rest.
    text = json.dumps(rows, ensure_ascii=False, default=_decimal_text)
    return statement.run(rows=text, now=now, job_kind=PROCESS_JOB)


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _outcomes(answers, deliveries: list[IpnDelivery]) -> list[str | TelePayError]:
    outcomes: list[str | TelePayError] = []
    for (_, known_order, consistent, event_id), delivery in zip(answers, deliveries):
        ipn = delivery.ipn
        status = ipn.payment_status
        if not known_order:
            outcomes.append(NotFound(f"No order {ipn.order_id!r}." if ipn.order_id is not None else
                                     f"No payment {ipn.parent_payment_id!r} to re-deposit to.",
                                     code="unknown_order"))
        elif not consistent:
            outcomes.append(Conflict(f"Payment {ipn.payment_id} belongs to another order.",
                                     code="payment_order_mismatch"))
        elif event_id is None:
            logger.info("IPN repeat: payment %s status %s", ipn.payment_id, status, extra=_ids(ipn))
            outcomes.append(DUPLICATE)
        else:
            logger.info("IPN accepted: payment %s status %s order %s parent %s", ipn.payment_id, status,
                        ipn.order_id, ipn.parent_payment_id, extra=_ids(ipn))
            outcomes.append(ACCEPTED)
    return outcomes


def _ids(ipn: IpnIn) -> dict[str, object]:
    """Log fields named here, not left to the log context: one request records a whole batch."""
    ids = {"payment_id": ipn.payment_id, "invoice_id": ipn.order_id}
    return {k: v for k, v in ids.items() if v is not None}


def record_ipns(session: Session, deliveries: list[IpnDelivery], now: datetime) -> list[str | TelePayError]:
    """Records every delivery in the session's transaction. Returns, in order, "accepted" for a
    new (payment, status), "duplicate" for a repeat, or the error that refuses that delivery."""
    return _outcomes(_run(_record_statement(session.connection().connection), deliveries, now), deliveries)


def record_ipns_committed(connection: Connection, deliveries: list[IpnDelivery],
                          now: datetime) -> list[str | TelePayError]:
    """As `record_ipns`, in a transaction of its own that has committed when this returns.

    The batch is one statement, and a statement sent outside a transaction block is a
    transaction by itself: PostgreSQL commits it, durably, before it answers. So the driver runs
    it in autocommit mode, and the batch costs one round trip instead of three (BEGIN,
    statement, COMMIT); on a busy process each round trip also waits for the interpreter lock.
    `connection` must not be inside a SQLAlchemy transaction.
    """
    pooled = connection.connection
    driver = pooled.driver_connection
    if connection.in_transaction():
        raise RuntimeError("an IPN batch must run outside any transaction, or it would commit with it")
    if driver._in_transaction:
        # Left open by something SQLAlchemy does not track (SQLAlchemy's own pool_pre_ping does
        # this); a statement sent into it would be rolled back when the connection is returned.
        driver.rollback()
    driver.autocommit = True
    try:
        answers = _run(_record_statement(pooled), deliveries, now)
    finally:
        driver.autocommit = False
    return _outcomes(answers, deliveries)


def record_ipn(session: Session, ipn, body: dict[str, Any], raw: str, now: datetime) -> str:
    """Records one delivery; returns "accepted" or "duplicate", raises if it is refused."""
    [outcome] = record_ipns(session, [IpnDelivery(ipn, body, raw)], now)
    if isinstance(outcome, TelePayError):
        raise outcome
    return outcome
