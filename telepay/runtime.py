"""Composition root: builds settings, engine, services, the bot, the worker and the API, and
runs them in one process. Nothing else in the package reads the environment or builds clients.
"""

from __future__ import annotations

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
from telepay.clock import Clock, SystemClock
from telepay.config import Settings
from telepay.models import migrate
from telepay.models.engine import describe, make_engine, make_session_factory
from telepay.services.jobs import JobQueue
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


def build_services(settings: Settings, engine: Engine | None = None, clock: Clock | None = None) -> Services:
    engine = engine or make_engine(settings)
    session_factory = make_session_factory(engine)
    clock = clock or SystemClock()
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        clock=clock,
        jobs=JobQueue(session_factory, clock=clock),
    )


def job_handlers(services: Services, application: Application) -> dict[str, Handler]:
    """Job kind -> coroutine. Each capability registers its kinds here."""
    return {
        NOTIFY_JOB: OwnerNotifier(services.session_factory, application.bot),
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
