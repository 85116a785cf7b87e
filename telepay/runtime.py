"""Composition root: builds settings, engine, services, the bot, the worker and the API, and
runs them in one process. Nothing else in the package reads the environment or builds clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from telegram import Update
from telegram.ext import Application

from telepay.api.app import create_app
from telepay.api.server import ApiServer
from telepay.bot.app import build_application
from telepay.bot.context import rights as bot_rights
from telepay.config import ConfigError, Settings
from telepay.models import migrate
from telepay.models.engine import describe, make_engine
from telepay.ops.metrics import serve_metrics
from telepay.ops.polling import PollSupervisor, PollWatch, log_poll_error
from telepay.ops.signals import StopSignals
from telepay.ops.startup import wait_for_database
from telepay.ops.version import version
from telepay.ops.watchdog import Watchdog
from telepay.services import lifecycle
from telepay.services.payments.checker import TIMER_NAME as PAYMENT_CHECK_TIMER
from telepay.services.payouts.engine import TIMER_NAME as PAYOUT_TIMER
from telepay.services.posts import TIMER_NAME as REPOST_TIMER, RepostTimer
from telepay.services.rights import TIMER_NAME as RIGHTS_TIMER
from telepay.services.timers import TimerLog, schedule
from telepay.services.payments import reconcile
from telepay.services.stars.engine import RECONCILE_TIMER, RELEASE_TIMER
from telepay.services.worker import Handler, Worker
from telepay.services.payouts.wallet import WrongChain
from telepay.wiring import Services, build_services, nowpayments_client

__all__ = ["Services", "build_services", "job_handlers", "nowpayments_client", "run", "start_timers"]

logger = logging.getLogger(__name__)

PRUNE_TIMER = "jobs.prune"


def job_handlers(services: Services, application: Application) -> dict[str, Handler]:
    """Job kind -> coroutine, from the registry of kinds (`telepay.services.registry`)."""
    return services.jobs.kinds.handlers(services, application.bot)


def start_timers(application: Application, services: Services) -> None:
    """Periodic work, on PTB's JobQueue; each capability adds its timers here."""
    log = TimerLog(services.session_factory, services.clock)
    repost = RepostTimer(services.session_factory, services.jobs, services.clock)

    async def queue_reposts() -> None:
        if await asyncio.to_thread(repost.run_once):
            services.wake_worker()

    schedule(application, log, REPOST_TIMER, 60, queue_reposts)

    async def check_payments() -> None:
        if await asyncio.to_thread(services.payment_checker.run_once):
            services.wake_worker()

    schedule(application, log, PAYMENT_CHECK_TIMER, 60, check_payments)

    async def reconcile_payments() -> None:
        if await asyncio.to_thread(services.reconciler.run_once):
            services.wake_worker()

    schedule(application, log, reconcile.TIMER_NAME, reconcile.EVERY_SECONDS, reconcile_payments)

    async def payout_batches() -> None:
        if services.payouts is not None and await services.payouts.tick():
            services.wake_worker()

    # First run one interval after start: a process that starts and stops at once touches no provider.
    every = services.settings.payout_batch_interval_seconds
    schedule(application, log, PAYOUT_TIMER, every, payout_batches, first_seconds=every)

    async def sweep_subscriptions() -> None:
        if (await asyncio.to_thread(services.sweep.run_once)).queued:
            services.wake_worker()

    schedule(application, log, lifecycle.TIMER_NAME, services.settings.sweep_interval_seconds, sweep_subscriptions)

    async def prune_jobs() -> None:
        await asyncio.to_thread(services.jobs.prune)

    schedule(application, log, PRUNE_TIMER, 3600, prune_jobs, first_seconds=3600)

    async def release_star_shares() -> None:
        if await asyncio.to_thread(services.stars.releaser.run_once):
            services.wake_worker()

    # Released shares become payouts: checked as often as payout batches are.
    schedule(application, log, RELEASE_TIMER, every, release_star_shares, first_seconds=min(every, 60))

    async def reconcile_stars() -> None:
        await services.stars.reconciler.run(application.bot)
        services.wake_worker()

    schedule(application, log, RECONCILE_TIMER, 86400, reconcile_stars, first_seconds=300)

    checker = bot_rights(application)

    async def check_rights() -> None:
        await checker.check_all()
        await asyncio.to_thread(checker.review_overdue)
        services.wake_worker()

    rights_every = services.settings.rights_check_seconds
    schedule(application, log, RIGHTS_TIMER, rights_every, check_rights, first_seconds=min(rights_every, 30))


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the garbage collector's sight (`gc.freeze`).

    The process imports web3, SQLAlchemy and PTB: a few hundred thousand objects that live as
    long as it does. Each full collection walked all of them; under a storm of IPNs one such
    pass cost as much as 130 ms of the interpreter lock. Garbage made later is collected as usual.
    """
    gc.collect()
    gc.freeze()


def check_chain(services: Services) -> None:
    """Refuse to start (ConfigError: exit 2) when ETH_RPC_URL serves another chain than ETH_CHAIN_ID.

    An RPC that cannot be reached now is only logged: payouts retry, and the wallet asks again
    before it signs anything, so nothing is ever signed for an unchecked chain."""
    if services.payouts is None:
        return
    try:
        services.payouts.wallet.check_chain()
    except WrongChain as wrong:
        raise ConfigError(f"{wrong}. Point ETH_RPC_URL at the chain ETH_CHAIN_ID names, or correct ETH_CHAIN_ID.",
                          ["ETH_RPC_URL", "ETH_CHAIN_ID"]) from None
    except Exception as unreachable:  # noqa: BLE001 - checked again before the first transfer
        logger.error("cannot ask ETH_RPC_URL which chain it serves (%s: %s); payouts wait until it answers",
                     type(unreachable).__name__, unreachable)


def run(settings: Settings, signals: StopSignals | None = None) -> None:
    """`telepay run`: bot polling on the main loop, worker on the same loop, API in a thread."""
    signals = signals or StopSignals().install()
    settings.require_for_run()
    logger.info("telepay %s starting", version())
    engine = make_engine(settings)
    try:
        wait_for_database(engine, settings.db_startup_wait_seconds)
        migrate.require_current(engine)
        logger.info("database: %s", describe(settings))
        services = build_services(settings, engine)
        check_chain(services)
        asyncio.run(_serve(settings, services, signals))
    finally:
        signals.detach()
        engine.dispose()
    logger.info("telepay stopped")


async def _serve(settings: Settings, services: Services, signals: StopSignals) -> None:
    # Signals only set an event: a SIGTERM that lands while we are still starting lets the
    # start finish, then everything stops in order, instead of tearing start-up apart.
    stop = asyncio.Event()
    signals.attach(asyncio.get_running_loop(), stop)

    api = ApiServer(create_app(settings, services), settings.http_host, settings.http_port)
    watch = services.poll_watch
    application = build_application(settings, services, services.session_factory, watch=watch)
    async with application:  # initialize: getMe, persisted conversations; on exit: flush them
        worker = Worker(services.jobs, job_handlers(services, application),
                        poll_seconds=settings.worker_poll_seconds, beat=lambda: services.beats.mark("worker"))
        worker.start()
        services.wake_worker = worker.wake
        start_timers(application, services)

        async def start_polling() -> None:
            await application.updater.start_polling(allowed_updates=Update.ALL_TYPES, timeout=10,
                                                    error_callback=log_poll_error)

        async def restart_polling() -> None:
            if application.updater.running:
                with contextlib.suppress(Exception):  # the dead loop re-raises what ended it
                    await application.updater.stop()
            await start_polling()

        await start_polling()
        await application.start()
        supervisor = asyncio.create_task(PollSupervisor(
            watch, restart_polling, beat=lambda: services.beats.mark("poll_supervisor")).run(stop), name="poll-supervisor")
        freeze_startup_heap()
        api.start()
        metrics = serve_metrics(services, settings.metrics_port)
        watchdog = Watchdog(services.beats)
        watchdog.notify(f"READY=1\nSTATUS=running as @{application.bot.username}")
        fed = asyncio.create_task(watchdog.run(stop), name="systemd-watchdog")
        logger.info("telepay is running as @%s (version %s)", application.bot.username, version())

        await stop.wait()
        logger.info("stopping")
        watchdog.notify("STOPPING=1")
        await supervisor
        await fed
        # Stop taking new work first (updates, webhooks), then let running jobs finish or be
        # handed back, then stop the application (timers, pending updates) and flush state.
        if application.updater.running:
            with contextlib.suppress(Exception):  # a poll loop ended by a 401 re-raises it here
                await application.updater.stop()
        await asyncio.to_thread(api.stop)
        if metrics is not None:
            await asyncio.to_thread(metrics.shutdown)
            metrics.server_close()
        await worker.stop(grace_seconds=5)
        await application.stop()
