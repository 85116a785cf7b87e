"""The services, built once from the settings: what the bot's handlers, the API's views, the job
handlers and the timers use. `runtime.py` runs them; tests and benchmarks build them here too.

Every field is always built, except `payouts`, which needs its own settings (ChangeNOW, an RPC
endpoint, the host wallet): without them the process takes payments and leaves payout jobs queued.
Nothing here imports the bot or the API, so both can name `Services` in their types.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from web3 import HTTPProvider, Web3

from telepay.clients.changenow import ChangeNowClient
from telepay.clients.nowpayments import NowPaymentsClient
from telepay.clock import Clock, OffsetFileClock, SystemClock
from telepay.config import Settings, parse_duration, reveal
from telepay.models.engine import make_engine, make_session_factory
from telepay.ops.alerts import AlertMonitor
from telepay.ops.checks import HealthChecks
from telepay.ops.liveness import Beats
from telepay.ops.polling import PollWatch
from telepay.services import lifecycle
from telepay.services.access import AccessService
from telepay.services.fulfilment import Fulfilment
from telepay.services.invoices import InvoiceService
from telepay.services.jobs import JobQueue
from telepay.services.payments.checker import PaymentChecker
from telepay.services.payments.processor import PaymentProcessor
from telepay.services.payments.reconcile import Reconciler
from telepay.services.payments.refusals import IpnRefusals
from telepay.services.payouts.engine import PayoutEngine
from telepay.services.registry import JOB_KINDS
from telepay.services.setup import SetupService
from telepay.services.stars.engine import StarsServices

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything handlers, views and job handlers need, built once by `build_services`."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    jobs: JobQueue
    # The bot's owner and buyer flows.
    setup: SetupService
    invoices: InvoiceService
    # Money in: IPNs into payment state, fulfilment, invites and join requests.
    payments: PaymentProcessor
    payment_checker: PaymentChecker
    reconciler: Reconciler
    ipn_refusals: IpnRefusals
    access: AccessService
    # Subscriptions' end: the expiry sweep (reminders, removals).
    sweep: lifecycle.ExpirySweep
    # Telegram Stars: checkout, receipts, held shares, reconciliation.
    stars: StarsServices
    # NOWPayments' client (the invoices and the status checks use it), closed by `close`.
    nowpayments: NowPaymentsClient
    # Money out: payout jobs, the batch timer and the host wallet; None without their settings.
    payouts: PayoutEngine | None = None
    # ChangeNOW's client (None without its key), closed by `close` with NOWPayments'.
    changenow: ChangeNowClient | None = None
    # Set once the worker runs; the API calls it after committing jobs so they start at once.
    wake_worker: Callable[[], None] = field(default=lambda: None)
    # What Telegram last answered the poller, and the loops' heartbeats (health, metrics, watchdog).
    poll_watch: PollWatch = field(default_factory=PollWatch)
    beats: Beats = field(default_factory=Beats)
    # The alert monitor, once `telepay run` has started it (its undelivered sends show in /status).
    alert_monitor: AlertMonitor | None = None
    # The status checks read the services themselves, so they are made right after them.
    health: HealthChecks = field(init=False)

    def __post_init__(self) -> None:
        self.health = HealthChecks(self)

    def close(self) -> None:
        """Close the outside clients' connections (shutdown). The engine is its owner's to dispose."""
        self.nowpayments.close()
        if self.changenow is not None:
            self.changenow.close()


def nowpayments_client(settings: Settings) -> NowPaymentsClient:
    return NowPaymentsClient(settings.nowpayments_base_url, reveal(settings.nowpayments_api_key) or "",
                             email=settings.nowpayments_email, password=reveal(settings.nowpayments_password))


def payout_engine(settings: Settings, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock,
                  changenow: ChangeNowClient | None) -> PayoutEngine | None:
    """The payout engine from its settings (ChangeNOW, an RPC endpoint, the host wallet); None without them."""
    if not (changenow and settings.eth_rpc_url and settings.host_wallet_private_key and settings.usdt_contract_address):
        return None
    return PayoutEngine.build(
        session_factory, jobs, clock, changenow=changenow,
        w3=Web3(HTTPProvider(settings.eth_rpc_url, request_kwargs={"timeout": 20})),
        private_key=settings.host_wallet_private_key.get_secret_value(),
        usdt_address=settings.usdt_contract_address,
        chain_id=settings.eth_chain_id, confirmations=settings.eth_confirmations,
        replace_after_seconds=settings.eth_replace_after_seconds,
        eth_min_fee_multiple=settings.eth_payout_min_fee_multiple,
        poll_seconds=settings.payout_poll_seconds, low_balance_usd=settings.host_wallet_low_balance_usd)


def build_services(settings: Settings, engine: Engine | None = None, clock: Clock | None = None) -> Services:
    engine = engine or make_engine(settings)
    session_factory = make_session_factory(engine)
    if clock is None:
        clock = OffsetFileClock(settings.clock_offset_file) if settings.clock_offset_file else SystemClock()
    jobs = JobQueue(session_factory, clock=clock, kinds=JOB_KINDS)
    changenow = (ChangeNowClient(settings.changenow_base_url, settings.changenow_api_key.get_secret_value())
                 if settings.changenow_api_key else None)
    nowpayments = nowpayments_client(settings)
    fulfilment = Fulfilment(jobs, fee_percent=settings.platform_fee_percent)
    bot_link = f"https://t.me/{settings.telegram_bot_username}"
    invoices = InvoiceService(
        session_factory, nowpayments, clock,
        ipn_callback_url=(settings.public_base_url.rstrip("/") + "/webhooks/nowpayments"
                          if settings.public_base_url else None),
        success_url=bot_link + "?start=paid", cancel_url=bot_link, stars_only=settings.stars_only)
    payouts = payout_engine(settings, session_factory, jobs, clock, changenow)
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        clock=clock,
        jobs=jobs,
        setup=SetupService(jobs, clock, address_validator=changenow),
        invoices=invoices,
        payments=PaymentProcessor(session_factory, jobs, clock, fulfilment=fulfilment,
                                  tolerance_percent=settings.payment_underpaid_tolerance_percent),
        payment_checker=PaymentChecker(session_factory, nowpayments, clock,
                                       after_minutes=settings.payment_status_check_minutes),
        reconciler=Reconciler(session_factory, nowpayments, jobs, clock,
                              after_minutes=settings.payment_status_check_minutes),
        ipn_refusals=IpnRefusals(session_factory, jobs, clock, alert_count=settings.ipn_refusal_alert_count,
                                 alert_minutes=settings.ipn_refusal_alert_minutes),
        access=AccessService(session_factory, clock, jobs),
        sweep=lifecycle.ExpirySweep(
            session_factory, clock, batch_size=settings.sweep_batch_size,
            grace=timedelta(seconds=settings.expiry_grace_seconds),
            reminder_offsets=[parse_duration("REMINDER_OFFSETS", o) for o in settings.reminder_offsets]),
        stars=StarsServices.build(session_factory, jobs, clock, settings, fulfilment),
        payouts=payouts,
        nowpayments=nowpayments,
        changenow=changenow,
    )
