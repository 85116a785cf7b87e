"""Composition root: builds settings, engine, services, the bot, the worker and the API, and
runs them in one process. Nothing else in the package reads the environment or builds clients.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from telegram import Update
from telegram.ext import Application

from telepay.api.app import create_app
from telepay.api.server import ApiServer
from telepay.bot.app import build_application
from telepay.clients.changenow import ChangeNowClient
from telepay.clients.nowpayments import NowPaymentsClient
from telepay.clock import Clock, SystemClock
from telepay.config import Settings
from telepay.models import migrate
from telepay.models.engine import describe, make_engine, make_session_factory
from telepay.services.broadcasts import POST_JOB
from telepay.services.invoices import InvoiceService
from telepay.services.jobs import JobQueue
from telepay.services.posts import TIMER_NAME as REPOST_TIMER, Poster, RepostTimer
from telepay.services.setup import SetupService
from telepay.services.timers import TimerLog, schedule
from telepay.services.notifications import NOTIFY_JOB, OwnerNotifier
from telepay.services.worker import Handler, Worker

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything handlers, views and job handlers need, built once."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    clock: Clock
    jobs: JobQueue
    # Set once the worker runs; the API calls it after committing jobs so they start at once.
    wake_worker: Callable[[], None] = field(default=lambda: None)
    # The bot's owner and buyer flows.
    setup: SetupService | None = None
    invoices: InvoiceService | None = None


def build_services(settings: Settings, engine: Engine | None = None, clock: Clock | None = None) -> Services:
    engine = engine or make_engine(settings)
    session_factory = make_session_factory(engine)
    clock = clock or SystemClock()
    services = Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        clock=clock,
        jobs=JobQueue(session_factory, clock=clock),
    )
    changenow = (ChangeNowClient(settings.changenow_base_url, settings.changenow_api_key)
                 if settings.changenow_api_key else None)
    services.setup = SetupService(services.jobs, clock, address_validator=changenow)
    bot_link = f"https://t.me/{settings.telegram_bot_username}"
    services.invoices = InvoiceService(
        session_factory, NowPaymentsClient(settings.nowpayments_base_url, settings.nowpayments_api_key or ""),
        clock, ipn_callback_url=(settings.public_base_url.rstrip("/") + "/webhooks/nowpayments"
                                 if settings.public_base_url else None),
        success_url=bot_link + "?start=paid", cancel_url=bot_link)
    return services


def job_handlers(services: Services, application: Application) -> dict[str, Handler]:
    """Job kind -> coroutine. Each capability registers its kinds here."""
    return {
        NOTIFY_JOB: OwnerNotifier(services.session_factory, application.bot),
        POST_JOB: Poster(services.session_factory, application.bot, services.clock,
                         services.settings.telegram_bot_username),
    }


def run(settings: Settings) -> None:
    """`telepay run`: bot polling on the main loop, worker on the same loop, API in a thread."""
    settings.require()
    engine = make_engine(settings)
    migrate.require_current(engine)
    logger.info("database: %s", describe(settings))
    services = build_services(settings, engine)
    api = ApiServer(create_app(settings, services), settings.http_host, settings.http_port)
    worker: Worker | None = None

    async def post_init(application: Application) -> None:
        nonlocal worker
        worker = Worker(services.jobs, job_handlers(services, application),
                        poll_seconds=settings.worker_poll_seconds)
        worker.start()
        services.wake_worker = worker.wake
        repost = RepostTimer(services.session_factory, services.jobs, services.clock)

        async def queue_reposts() -> None:
            if await asyncio.to_thread(repost.run_once):
                services.wake_worker()

        schedule(application, TimerLog(services.session_factory, services.clock), REPOST_TIMER, 60, queue_reposts)
        api.start()
        logger.info("telepay is running as @%s", application.bot.username)

    async def post_stop(application: Application) -> None:
        # Polling has stopped: stop taking webhooks, then let running jobs finish or hand back.
        api.stop()
        if worker is not None:
            await worker.stop(grace_seconds=5)

    async def post_shutdown(application: Application) -> None:
        engine.dispose()
        logger.info("telepay stopped")

    application = build_application(
        settings, services, services.session_factory,
        post_init=post_init, post_stop=post_stop, post_shutdown=post_shutdown,
    )
    application.run_polling(
        allowed_updates=Update.ALL_TYPES,
        stop_signals=(signal.SIGINT, signal.SIGTERM),
        timeout=10,
    )
