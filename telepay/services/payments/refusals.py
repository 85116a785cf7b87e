"""Refused IPNs: every one logged with its reason, kept, counted, and a run of them alerted.

A refused IPN is a payment we may never hear of again: NOWPayments resends a few times, then
gives up. The usual causes are ours (an outdated address allowlist, a rotated IPN secret, a
schema that does not know a new field's shape), so refusals must be visible: a warning line
with the client address and the reason as fields, a row in `refused_ipns` (what `/status` and
the metrics read through `refused_ipns_since`), and an operator alert once
IPN_REFUSAL_ALERT_COUNT refusals arrive within IPN_REFUSAL_ALERT_MINUTES (at most one per window).

Reasons: `address` (not on the allowlist), `signature` (missing, malformed, wrong, or a body
that is not JSON or too large to verify), `schema` (signed, but not an IPN we can read), `order` (signed and readable,
but naming an order or parent payment we don't have, or another order's payment).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import RefusedIpn
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators

logger = logging.getLogger(__name__)

REASONS = ("address", "signature", "schema", "order")
# Refusals older than this are deleted as new ones come: the table answers "how many lately",
# and a flood of forgeries must not grow it for ever.
KEEP = timedelta(days=30)


def refused_ipns_since(session: Session, since: datetime) -> dict[str, int]:
    """How many IPNs were refused since `since`, by reason (reasons with none are left out)."""
    rows = session.execute(select(RefusedIpn.reason, func.count()).where(RefusedIpn.refused_at >= since)
                           .group_by(RefusedIpn.reason))
    return {reason: count for reason, count in rows}


class IpnRefusals:
    """Records refusals for the IPN endpoint (called from its guard, in the request's thread)."""

    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, *,
                 alert_count: int, alert_minutes: int):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock
        self.alert_count = alert_count
        self.window = timedelta(minutes=alert_minutes)

    def refused(self, client_ip: str, reason: str, detail: str) -> None:
        """Log, keep and count one refusal. Never raises: the refusal's answer matters more."""
        logger.warning("IPN refused: reason=%s client_ip=%s detail=%s", reason, client_ip, detail,
                       extra={"client_ip": client_ip, "reason": reason})
        now = self.clock.now()
        try:
            with self.session_factory.begin() as session:
                session.add(RefusedIpn(refused_at=now, client_ip=client_ip[:64], reason=reason,
                                       detail=detail[:500]))
                session.execute(delete(RefusedIpn).where(RefusedIpn.refused_at < now - KEEP))
                session.flush()
                self._alert_if_a_run(session, now)
        except Exception:  # noqa: BLE001 - e.g. the database is down: the log line above stays
            logger.error("could not record a refused IPN (reason=%s client_ip=%s)", reason, client_ip,
                         exc_info=True)

    def _alert_if_a_run(self, session: Session, now: datetime) -> None:
        counts = refused_ipns_since(session, now - self.window)
        total = sum(counts.values())
        if total < self.alert_count:
            return
        minutes = int(self.window.total_seconds() // 60)
        # One alert per window: the key names the window the run was seen in.
        window_index = int(now.timestamp() // self.window.total_seconds())
        by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
        alert_operators(session, self.jobs,
                        f"🚫 {total} NOWPayments IPNs refused in the last {minutes} minutes ({by_reason}). "
                        "Paid invoices may be waiting: check NOWPAYMENTS_IPN_IPS against NOWPayments' "
                        "current addresses and NOWPAYMENTS_IPN_SECRET against the dashboard; "
                        "`telepay payments reconcile` takes in payments whose IPNs were lost.",
                        key=f"ipn-refusals:{window_index}")
