"""Composition root: builds settings, engine, services, the bot, the worker and the API, and
runs them in one process. Nothing else in the package reads the environment or builds clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from telegram import Bot, Update
from telegram.ext import Application, Updater

from telepay.api.app import create_app
from telepay.api.server import ApiServer
from telepay.bot.app import build_application
from telepay.roles import ALL_ROLES, API, BOT, WORKER, BotLock, build_sender, describe_roles
from telepay.config import ConfigError, Settings
from telepay.models import migrate
from telepay.models.engine import describe, make_engine
from telepay.ops.alerts import AlertMonitor, channels_for
from telepay.ops.metrics import serve_metrics
from telepay.ops.polling import PollSupervisor, log_poll_error
from telepay.ops.signals import StopSignals
from telepay.ops.startup import wait_for_database
from telepay.ops.version import version
from telepay.ops.watchdog import Watchdog
from telepay.services import lifecycle
from telepay.services.payments.checker import TIMER_NAME as PAYMENT_CHECK_TIMER
from telepay.services.payouts.engine import TIMER_NAME as PAYOUT_TIMER
from telepay.services.posts import TIMER_NAME as REPOST_TIMER, RepostTimer
from telepay.services.rights import TIMER_NAME as RIGHTS_TIMER, ChannelRights
from telepay.services.timers import TimerLog, Timers
from telepay.services.payments import reconcile
from telepay.services.stars.engine import RECONCILE_TIMER, RELEASE_TIMER
from telepay.services.worker import Handler, Worker
from telepay.services.payouts.wallet import WrongChain
from telepay.wiring import Services, build_services, nowpayments_client

__all__ = ["Services", "build_services", "job_handlers", "nowpayments_client", "run", "build_timers"]

logger = logging.getLogger(__name__)

PRUNE_TIMER = "jobs.prune"


def job_handlers(services: Services, application: Application) -> dict[str, Handler]:
    """Job kind -> coroutine, from the registry of kinds (`telepay.services.registry`)."""
    return services.jobs.kinds.handlers(services, application.bot)


def build_timers(services: Services, bot: Bot) -> Timers:
    """Periodic work for the worker role; each capability adds its timers here."""
    timers = Timers(TimerLog(services.session_factory, services.clock))
    repost = RepostTimer(services.session_factory, services.jobs, services.clock)

    async def queue_reposts() -> None:
        if await asyncio.to_thread(repost.run_once):
            services.wake_worker()

    timers.add(REPOST_TIMER, 60, queue_reposts)

    async def check_payments() -> None:
        if await asyncio.to_thread(services.payment_checker.run_once):
            services.wake_worker()

    timers.add(PAYMENT_CHECK_TIMER, 60, check_payments)

    async def reconcile_payments() -> None:
        if await asyncio.to_thread(services.reconciler.run_once):
            services.wake_worker()

    timers.add(reconcile.TIMER_NAME, reconcile.EVERY_SECONDS, reconcile_payments)

    async def payout_batches() -> None:
        if services.payouts is not None and await services.payouts.tick():
            services.wake_worker()

    # First run one interval after start: a process that starts and stops at once touches no provider.
    every = services.settings.payout_batch_interval_seconds
    timers.add(PAYOUT_TIMER, every, payout_batches, first_seconds=every)

    async def sweep_subscriptions() -> None:
        if (await asyncio.to_thread(services.sweep.run_once)).queued:
            services.wake_worker()

    timers.add(lifecycle.TIMER_NAME, services.settings.sweep_interval_seconds, sweep_subscriptions)

    async def prune_jobs() -> None:
        await asyncio.to_thread(services.jobs.prune)

    timers.add(PRUNE_TIMER, 3600, prune_jobs, first_seconds=3600)

    async def release_star_shares() -> None:
        if await asyncio.to_thread(services.stars.releaser.run_once):
            services.wake_worker()

    # Released shares become payouts: checked as often as payout batches are.
    timers.add(RELEASE_TIMER, every, release_star_shares, first_seconds=min(every, 60))

    async def reconcile_stars() -> None:
        await services.stars.reconciler.run(bot)
        services.wake_worker()

    timers.add(RECONCILE_TIMER, 86400, reconcile_stars, first_seconds=300)

    checker = ChannelRights(services.session_factory, services.jobs, services.clock, bot)

    async def check_rights() -> None:
        await checker.check_all()
        await asyncio.to_thread(checker.review_overdue)
        services.wake_worker()

    rights_every = services.settings.rights_check_seconds
    timers.add(RIGHTS_TIMER, rights_every, check_rights, first_seconds=min(rights_every, 30))
    return timers


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


def run(settings: Settings, signals: StopSignals | None = None, roles: frozenset[str] = frozenset(ALL_ROLES),
        payouts: bool = True) -> None:
    """`telepay run`: the roles asked for (default all): bot polling and the worker on the main
    loop, the API in a thread. Raises BotLockHeld if another process polls for the token."""
    signals = signals or StopSignals().install()
    settings.require_for_run()
    logger.info("telepay %s starting", version())
    engine = make_engine(settings)
    bot_lock = BotLock(engine, settings.telegram_bot_token.get_secret_value()) if BOT in roles else None
    try:
        wait_for_database(engine, settings.db_startup_wait_seconds)
        migrate.require_current(engine)
        logger.info("database: %s; roles: %s", describe(settings), describe_roles(roles))
        if bot_lock is not None:
            bot_lock.acquire()
        services = build_services(settings, engine)
        if not payouts:
            # After a restore, until `telepay payouts reconcile` has put every payout in flight in
            # its true state: payout jobs stay queued and no batch starts; everything else runs.
            services.payouts = None
            logger.warning("payouts paused (--no-payouts): payout jobs wait in the queue")
        check_chain(services)
        asyncio.run(_serve(settings, services, signals, roles, bot_lock))
    finally:
        signals.detach()
        if bot_lock is not None:
            bot_lock.release()
        engine.dispose()
    logger.info("telepay stopped")


async def _serve(settings: Settings, services: Services, signals: StopSignals, roles: frozenset[str],
                 bot_lock: BotLock | None) -> None:
    # Signals only set an event: a SIGTERM that lands while we are still starting lets the
    # start finish, then everything stops in order, instead of tearing start-up apart.
    stop = asyncio.Event()
    signals.attach(asyncio.get_running_loop(), stop)

    api = ApiServer(create_app(settings, services), settings.http_host, settings.http_port) if API in roles else None
    watch = services.poll_watch
    application = (build_application(settings, services, services.session_factory, watch=watch) if BOT in roles
                   else build_sender(settings) if WORKER in roles else None)
    async with contextlib.AsyncExitStack() as stack:
        if application is not None:
            # initialize: getMe, persisted conversations; on exit: flush them
            await stack.enter_async_context(application)
        worker = timers = supervisor = None
        if WORKER in roles:
            worker = Worker(services.jobs, job_handlers(services, application),
                            poll_seconds=settings.worker_poll_seconds, beat=lambda: services.beats.mark("worker"))
            worker.start()
            services.wake_worker = worker.wake
            timers = build_timers(services, application.bot)
            timers.start()
        if BOT in roles:
            async def start_polling() -> None:
                await application.updater.start_polling(allowed_updates=Update.ALL_TYPES, timeout=10,
                                                        error_callback=log_poll_error)

            async def restart_polling() -> None:
                # A poll loop that died (a 401 ends PTB's for good) leaves its Updater unable to
                # poll again: its stop() re-raises what ended the loop halfway, leaving the loop's
                # stop event set, so any later loop on it stops at once and the bot is silently
                # deaf. So each restart polls with a fresh Updater on the same bot and queue, from
                # the old one's offset (updates already taken are not taken twice).
                old = application.updater
                if old.running:
                    with contextlib.suppress(Exception):  # the dead loop re-raises what ended it
                        await old.stop()
                fresh = Updater(bot=application.bot, update_queue=application.update_queue)
                fresh._last_update_id = old._last_update_id
                await fresh.initialize()
                application.updater = fresh
                await start_polling()

            await start_polling()
            await application.start()
            supervisor = asyncio.create_task(PollSupervisor(
                watch, restart_polling, beat=lambda: services.beats.mark("poll_supervisor")).run(stop),
                name="poll-supervisor")
        freeze_startup_heap()
        if api is not None:
            api.start()
        # Every role serves its metrics (the database-wide figures are the same from any of them);
        # several processes on one machine need their own METRICS_PORT, or 0 for none.
        metrics = serve_metrics(services, settings.metrics_port)
        alerting = None
        if BOT in roles:
            # One alerting process across all of them (there is one bot process per token): the
            # monitor's de-duplication lives in its memory, and N monitors would alert N times.
            services.alert_monitor = AlertMonitor(
                services.health.run, channels_for(settings, application.bot.send_message),
                repeat_seconds=settings.alert_repeat_minutes * 60)
            alerting = asyncio.create_task(services.alert_monitor.run(stop, settings.alert_check_seconds),
                                           name="alert-monitor")
        watchdog = Watchdog(services.beats)
        running_as = f" as @{application.bot.username}" if application is not None else ""
        watchdog.notify(f"READY=1\nSTATUS=running ({describe_roles(roles)}){running_as}")
        fed = asyncio.create_task(watchdog.run(stop), name="systemd-watchdog")
        logger.info("telepay is running (%s)%s (version %s)", describe_roles(roles), running_as, version())

        lost = asyncio.create_task(bot_lock.watch(), name="bot-lock") if bot_lock is not None else None
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([t for t in (stopped, lost) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # (the lock lost: everything stops as on SIGTERM)
        logger.info("stopping")
        watchdog.notify("STOPPING=1")
        if supervisor is not None:
            await supervisor
        await fed
        if alerting is not None:
            await alerting
        # Stop taking new work first (updates, webhooks), then let running jobs finish or be
        # handed back, then stop the application (pending updates) and flush state.
        if BOT in roles and application.updater.running:
            with contextlib.suppress(Exception):  # a poll loop ended by a 401 re-raises it here
                await application.updater.stop()
        if api is not None:
            await asyncio.to_thread(api.stop)
        if metrics is not None:
            await asyncio.to_thread(metrics.shutdown)
            metrics.server_close()
        if timers is not None:
            await timers.stop()
        if worker is not None:
            await worker.stop(grace_seconds=5)
        if BOT in roles:
            await application.stop()
        if lost is not None:
            if lost.done():
                lost.result()  # raises BotLockLost: the process exits non-zero, after stopping in order
            lost.cancel()
