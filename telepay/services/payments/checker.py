"""Asking NOWPayments about payments whose IPNs seem lost (`GET /v1/payment/{id}`).

A payment still unfinished PAYMENT_STATUS_CHECK_MINUTES after it began, on an invoice not yet
completed, is asked about at most once per that interval, for up to a week. A status we have not
stored is recorded exactly as an IPN would be (`record_ipn`, same dedupe key), so the answer moves
money state through the one path IPNs take, and a late real IPN for it is a repeat.

Only payments we have heard of at least once can be asked about: NOWPayments' API finds a
payment by its id, and a payment whose every IPN was lost is unknown to us. Those are found in
NOWPayments' payments list by `reconcile`.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from telepay.services.ipn_schema import IpnIn
from telepay.clients.nowpayments import ProviderFailure
from telepay.clock import Clock
from telepay.errors import TelePayError
from telepay.logs import log_context
from telepay.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from telepay.services.ipn import record_ipn

logger = logging.getLogger(__name__)

TIMER_NAME = "payments.check"
UNSETTLED = (PaymentStatus.WAITING, PaymentStatus.CONFIRMING, PaymentStatus.CONFIRMED, PaymentStatus.SENDING,
             PaymentStatus.PARTIALLY_PAID)
GIVE_UP_AFTER = timedelta(days=7)


class PaymentChecker:
    def __init__(self, session_factory: sessionmaker[Session], provider: Any, clock: Clock, *,
                 after_minutes: int, batch: int = 20):
        self.session_factory = session_factory
        self.provider = provider
        self.clock = clock
        self.quiet = timedelta(minutes=after_minutes)
        self.batch = batch

    def due(self) -> list[str]:
        now = self.clock.now()
        with self.session_factory() as session:
            return list(session.scalars(
                select(Payment.provider_payment_id).join(Invoice, Invoice.id == Payment.invoice_id)
                .where(Payment.status.in_(UNSETTLED), Invoice.status != InvoiceStatus.COMPLETED,
                       Payment.created_at < now - self.quiet, Payment.created_at > now - GIVE_UP_AFTER,
                       Payment.updated_at < now - self.quiet,
                       or_(Payment.checked_at.is_(None), Payment.checked_at < now - self.quiet))
                .order_by(Payment.checked_at.nulls_first(), Payment.id).limit(self.batch)))

    def run_once(self) -> int:
        """Ask about every due payment; returns how many new statuses were recorded."""
        recorded = 0
        for provider_payment_id in self.due():
            with log_context(payment_id=provider_payment_id):
                try:
                    answer = self.provider.get_payment(provider_payment_id)
                except (ProviderFailure, ValueError) as error:
                    logger.warning("payment %s: status query failed: %s", provider_payment_id, error)
                    answer = None
                recorded += self._record(provider_payment_id, answer)
        return recorded

    def _record(self, provider_payment_id: str, answer: dict[str, Any] | None) -> int:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            payment = session.scalars(select(Payment).where(Payment.provider_payment_id == provider_payment_id)
                                      .with_for_update()).one()
            payment.checked_at = now
            if answer is None:
                return 0
            try:
                ipn = IpnIn.model_validate(answer)
            except ValidationError as error:
                logger.warning("payment %s: status answer not understood: %s", provider_payment_id,
                               error.errors()[:1])
                return 0
            if ipn.payment_id != provider_payment_id:
                logger.warning("payment %s: status answer names payment %s", provider_payment_id, ipn.payment_id)
                return 0
            raw = json.dumps(answer, default=str, ensure_ascii=False)  # Decimals keep their digits
            try:
                result = record_ipn(session, ipn, answer, raw, now)
            except TelePayError as error:
                logger.warning("payment %s: status answer refused: %s", provider_payment_id, error.message)
                return 0
        if result == "accepted":
            logger.info("payment %s: status query found %s (its IPN was lost)", provider_payment_id,
                        ipn.payment_status)
            return 1
        return 0
