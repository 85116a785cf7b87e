"""Prometheus metrics, read at scrape time: the same facts `/status` checks, as numbers.

Served by prometheus_client's own HTTP server on 127.0.0.1:METRICS_PORT only, never through
Caddy (nothing in it is for the public, and a scrape costs a few queries). Everything is
computed when Prometheus asks, from the database and the process's own state, so the numbers
are the same whichever process answers and nothing is counted twice after a restart.
`ops/alerts.rules.yml` alerts on these names.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Iterator

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import func, select

from telepay.models import (
    InviteStatus, Invoice, InvoiceStatus, Job, JobState, Payment, PaymentEvent, Payout, PayoutStatus, RefusedIpn,
    Subscription, SubscriptionStatus,
)
from telepay.ops.checks import _RANK
from telepay.services.delivery import delivery_queue
from telepay.ops.version import version

logger = logging.getLogger(__name__)

# A payout in one of these has money on its way: the age of the oldest says whether it is stuck.
IN_FLIGHT = (PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED, PayoutStatus.FUNDING,
             PayoutStatus.FUNDED)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class TelePayCollector:
    def __init__(self, services) -> None:
        self.services = services

    def collect(self) -> Iterator:
        info = InfoMetricFamily("telepay_build", "The running version.")
        info.add_metric([], {"version": version()})
        yield info
        yield from self._process()
        try:
            yield from self._database()
        except Exception as error:  # noqa: BLE001 - a scrape must answer even with the database down
            logger.warning("metrics: database figures unavailable: %s", error)
        yield from self._health()

    def _process(self) -> Iterator:
        svc = self.services
        watch = svc.poll_watch
        lag = _gauge("telepay_poll_seconds_since_success", "Seconds since getUpdates last answered 200 "
                                                           "(-1: not yet, or this process does not poll).")
        since = watch.seconds_since_success()
        lag.add_metric([], -1 if since is None else since)
        yield lag
        restarts = CounterMetricFamily("telepay_poll_restarts", "Times polling was restarted after its loop died.")
        restarts.add_metric([], watch.restarts)
        yield restarts
        limited = CounterMetricFamily("telepay_telegram_429", "Bot API calls Telegram answered 429.", labels=["method"])
        for method, count in sorted(watch.too_many_requests.items()):
            limited.add_metric([method], count)
        yield limited
        for name in ("worker", "poll_supervisor"):
            age = svc.beats.age(name)
            beat = _gauge(f"telepay_{name}_heartbeat_age_seconds", f"Seconds since the {name} loop last turned "
                                                                   "(-1: not run in this process).")
            beat.add_metric([], -1 if age is None else age)
            yield beat
        pool = svc.engine.pool
        use = _gauge("telepay_db_pool_connections", "Database pool connections by use.", ["use"])
        use.add_metric(["checked_out"], pool.checkedout())
        use.add_metric(["checked_in"], pool.checkedin())
        use.add_metric(["overflow"], max(pool.overflow(), 0))
        yield use
        size = _gauge("telepay_db_pool_size", "Configured pool size (without overflow).")
        size.add_metric([], pool.size())
        yield size

    def _database(self) -> Iterator:
        svc = self.services
        now = svc.clock.now()
        hour_ago = now - timedelta(hours=1)
        with svc.session_factory() as session:
            jobs = _gauge("telepay_jobs", "Jobs by kind and state.", ["kind", "state"])
            for kind, state, count in session.execute(select(Job.kind, Job.state, func.count())
                                                      .where(Job.state != JobState.DONE).group_by(Job.kind, Job.state)):
                jobs.add_metric([kind, str(state)], count)
            yield jobs
            oldest = _gauge("telepay_jobs_oldest_due_age_seconds", "Age of the oldest queued job past its run time.",
                            ["kind"])
            for kind, run_at in session.execute(select(Job.kind, func.min(Job.run_at)).where(
                    Job.state == JobState.QUEUED, Job.run_at <= now).group_by(Job.kind)):
                oldest.add_metric([kind], (now - run_at).total_seconds())
            yield oldest
            accepted = _gauge("telepay_ipns_accepted_last_hour", "IPNs stored in the last hour, by payment status.",
                              ["status"])
            for status, count in session.execute(select(PaymentEvent.status, func.count()).where(
                    PaymentEvent.received_at >= hour_ago).group_by(PaymentEvent.status)):
                accepted.add_metric([status], count)
            yield accepted
            refused = _gauge("telepay_ipns_refused_last_hour", "IPNs refused in the last hour, by reason.", ["reason"])
            for reason, count in session.execute(select(RefusedIpn.reason, func.count()).where(
                    RefusedIpn.refused_at >= hour_ago).group_by(RefusedIpn.reason)):
                refused.add_metric([reason], count)
            yield refused
            not_created = _gauge("telepay_invoices_not_created_last_hour",
                                 "Invoices NOWPayments refused to create in the last hour (a wrong API key?).")
            not_created.add_metric([], session.scalar(select(func.count()).where(
                Invoice.status == InvoiceStatus.CREATED, Invoice.created_at >= hour_ago,
                Invoice.provider_error.is_not(None))))
            yield not_created
            payouts = _gauge("telepay_payouts", "Payouts by status.", ["status"])
            for status, count in session.execute(select(Payout.status, func.count()).group_by(Payout.status)):
                payouts.add_metric([str(status)], count)
            yield payouts
            in_flight = session.scalar(select(func.min(Payout.created_at)).where(Payout.status.in_(IN_FLIGHT)))
            age = _gauge("telepay_payout_oldest_in_flight_age_seconds", "Age of the oldest payout with money on "
                                                                        "its way (0: none).")
            age.add_metric([], (now - in_flight).total_seconds() if in_flight else 0)
            yield age
            failing = session.scalar(select(func.min(Payout.failing_since)).where(Payout.failing_since.is_not(None)))
            fail = _gauge("telepay_payout_failing_seconds", "How long the longest-failing payout has failed (0: none).")
            fail.add_metric([], (now - failing).total_seconds() if failing else 0)
            yield fail
            review = _gauge("telepay_payments_in_review", "Payments waiting for an operator's decision.")
            review.add_metric([], session.scalar(select(func.count()).where(Payment.needs_review.is_not(None))))
            yield review
            queue = delivery_queue(session)
            waiting = _gauge("telepay_delivery_queue", "Paying buyers not let in yet, by state (waiting on a paused "
                                                       "channel, or in review past the deadline).", ["state"])
            for state in (InviteStatus.WAITING, InviteStatus.REVIEW):
                waiting.add_metric([str(state)], sum(w.status == state for w in queue))
            yield waiting
            oldest_wait = _gauge("telepay_delivery_queue_oldest_seconds", "Age of the oldest wait (0: none).")
            oldest_wait.add_metric([], (now - queue[0].since).total_seconds() if queue else 0)
            yield oldest_wait
            active = _gauge("telepay_subscriptions_active", "Active subscriptions.")
            active.add_metric([], session.scalar(select(func.count()).where(
                Subscription.status == SubscriptionStatus.ACTIVE)))
            yield active

    def _health(self) -> Iterator:
        report = self.services.health.run()
        level = _gauge("telepay_check_level", "Each /status check: 0 ok, 1 degraded, 2 down.", ["check"])
        for check in report.checks:
            level.add_metric([check.name], _RANK[check.level])
        yield level
        overall = _gauge("telepay_status_level", "/status overall: 0 ok, 1 degraded, 2 down.")
        overall.add_metric([], _RANK[report.status])
        yield overall
        wallet = next((c for c in report.checks if c.name == "host_wallet"), None)
        if wallet is not None and "eth_usd" in wallet.data:
            worth = _gauge("telepay_host_wallet_usd", "Host wallet balance in USD, by asset.", ["asset"])
            owed = _gauge("telepay_host_wallet_owed_usd", "USD of payouts not yet funded, by asset.", ["asset"])
            for asset in ("eth", "usdt"):
                worth.add_metric([asset.upper()], float(Decimal(wallet.data[f"{asset}_usd"])))
                owed.add_metric([asset.upper()], float(Decimal(wallet.data.get(f"owed_{asset}_usd", "0"))))
            yield worth
            yield owed


def serve_metrics(services, port: int):
    """Start the loopback endpoint; returns the server (call `.shutdown()`), or None when off."""
    if not port:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelePayCollector(services))
    try:
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as error:
        # Metrics are for watching the service, not part of it: a port taken must not stop sales.
        logger.error("metrics endpoint not started on 127.0.0.1:%d: %s (set METRICS_PORT)", port, error)
        return None
    logger.info("metrics on http://127.0.0.1:%d/metrics", port)
    return server
