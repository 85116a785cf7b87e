"""Recovering payments whose every IPN was lost: NOWPayments' payments list, matched on our order.

NOWPayments stops resending an IPN after a few failed deliveries, so a buyer can pay while every
IPN is refused (the database down for a while, a rotated IPN secret, an outdated allowlist), and
`GET /payment/{id}` cannot help: we never learnt the payment's id. So an invoice still unpaid on
our side PAYMENT_STATUS_CHECK_MINUTES after it was opened (and at most LOOKBACK old) is looked up
in the account's payments list (`GET /payment/?dateFrom&dateTo`) over the window since the
oldest such invoice was opened, one listing per run, matched on `order_id`; re-deposits naming a
matched or known payment as their parent come with it. Each payment is recorded exactly as its
IPN would have been (`record_ipn`, the same dedupe key), so it moves money state through the one
path IPNs take, and a late real IPN for it is a repeat. Operators are told of every recovered
payment that carried money, once. `telepay payments reconcile [--since]` runs the same by hand.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telepay.api.schemas import IpnIn
from telepay.clock import Clock
from telepay.errors import TelePayError
from telepay.models import Invoice, InvoiceStatus, Payment
from telepay.services.ipn import ACCEPTED, record_ipn
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators

logger = logging.getLogger(__name__)

TIMER_NAME = "payments.reconcile"
EVERY_SECONDS = 300
LOOKBACK = timedelta(days=2)
# Unpaid on our side: a `finished` we never heard of may stand behind any of these.
UNPAID = (InvoiceStatus.CREATED, InvoiceStatus.PENDING, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.EXPIRED,
          InvoiceStatus.FAILED)
# Statuses that say nothing arrived: recorded, but nobody is paged for them.
_NO_MONEY = {"waiting", "expired"}
_SLACK = timedelta(minutes=5)  # a payment is created a moment after its invoice; clocks differ


@dataclass(frozen=True)
class Recovered:
    payment_id: str
    invoice_id: str
    status: str


class Reconciler:
    def __init__(self, session_factory: sessionmaker[Session], provider: Any, jobs: JobQueue, clock: Clock, *,
                 after_minutes: int):
        self.session_factory = session_factory
        self.provider = provider
        self.jobs = jobs
        self.clock = clock
        self.quiet = timedelta(minutes=after_minutes)

    def run_once(self, since: datetime | None = None) -> list[Recovered]:
        """Look up the unpaid invoices opened since `since` (default: LOOKBACK ago) and at least
        the quiet time ago; record what NOWPayments knows and we don't. Raises the provider's
        failure (the timer logs it and tries again next time; the command reports it)."""
        now = self.clock.now()
        since = since or now - LOOKBACK
        with self.session_factory() as session:
            opened = dict(session.execute(
                select(Invoice.id, Invoice.created_at).where(
                    Invoice.status.in_(UNPAID), Invoice.provider_invoice_id.is_not(None),
                    Invoice.created_at >= since, Invoice.created_at <= now - self.quiet)).all())
        if not opened:
            return []
        listed = self.provider.list_payments(min(opened.values()) - _SLACK, now)
        recovered = [found for item in self._ours(listed, opened) if (found := self._record(item)) is not None]
        for found in recovered:
            logger.warning("payment %s (invoice %s): recovered from NOWPayments' payments list as %s; its "
                           "IPNs never reached us", found.payment_id, found.invoice_id, found.status,
                           extra={"payment_id": found.payment_id, "invoice_id": found.invoice_id})
        return recovered

    def _ours(self, listed: list[dict[str, Any]], opened: dict[str, datetime]) -> list[dict[str, Any]]:
        """The listed payments of our unpaid invoices, parents before their re-deposits."""
        mine = [item for item in listed if str(item.get("order_id")) in opened]
        parents = {str(item.get("payment_id")) for item in mine}
        with self.session_factory() as session:
            parents |= set(session.scalars(select(Payment.provider_payment_id).where(
                Payment.invoice_id.in_(list(opened)))))
        children = [item for item in listed if item.get("order_id") is None
                    and str(item.get("parent_payment_id")) in parents]
        return mine + children

    def _record(self, item: dict[str, Any]) -> Recovered | None:
        payment_id = str(item.get("payment_id"))
        try:
            ipn = IpnIn.model_validate(item)
        except ValidationError as error:
            logger.warning("payment %s: listed by NOWPayments but not understood: %s", payment_id,
                           error.errors()[:1])
            return None
        raw = json.dumps(item, default=str, ensure_ascii=False)  # Decimals keep their digits
        with self.session_factory.begin() as session:
            try:
                result = record_ipn(session, ipn, item, raw, self.clock.now())
            except TelePayError as error:
                logger.warning("payment %s: listed by NOWPayments but refused: %s", payment_id, error.message)
                return None
            if result != ACCEPTED:
                return None  # we had this status already
            invoice_id = session.scalar(select(Payment.invoice_id).where(Payment.provider_payment_id == ipn.payment_id))
            found = Recovered(ipn.payment_id, invoice_id, ipn.payment_status)
            if found.status not in _NO_MONEY:
                alert_operators(session, self.jobs,
                                f"🔎 Payment {found.payment_id} (invoice {invoice_id}) was {found.status} at "
                                "NOWPayments, but none of its IPNs reached us. It was recovered from their "
                                "payments list and is being processed as if its IPN had come. Check why IPNs "
                                "are lost (refused IPNs in the log and /status).",
                                key=f"recovered:{found.payment_id}:{found.status}")
        return found
