"""Direct messages to buyers, donors and operators: queued inside the transaction that decides
them (so a rolled-back decision sends nothing), sent later by the worker.

Each message has a dedupe key naming what it is about (`buyer:<payment>:<status>`,
`operator:<reason>:<payment>:<chat>`), so a repeated IPN or a retried job never says it twice.
A person who blocked the bot is not retried for a day: Telegram will refuse every time.

Operator alerts take one path: `alert_operators` queues one `operator.alert` job per fact
(deduplicated by its key), and that job queues one direct message per operator in
ADMIN_CHAT_IDS, so one operator who cannot be reached never holds the others' copies back,
and the code that raises an alert needs to know nothing about who receives it; with
ALERT_WEBHOOK_URL set the job also POSTs the fact there (status `notice`), retried until it
is accepted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden

from telepay.config import Settings
from telepay.models import Invoice, InvoiceStatus
from telepay.ops.webhook import Alert, WebhookChannel
from telepay.services.jobs import ClaimedJob, JobKind, JobQueue

logger = logging.getLogger(__name__)

DIRECT_JOB = "message.direct"
ALERT_JOB = "operator.alert"
ALERT_PREFIX = "🛎 TelePay: "


def queue_message(session: Session, jobs: JobQueue, chat_id: int, text: str, *, dedupe_key: str,
                  button: tuple[str, str] | None = None, unless_completed: str | None = None) -> int | None:
    """Queue `text` for a private chat. `button` is (label, URL). With `unless_completed` (an
    invoice id) the message is dropped if that invoice is completed by the time it is sent: a
    "we have seen your payment" must not arrive after the invite it announces."""
    payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
    if button:
        payload["button"] = list(button)
    if unless_completed:
        payload["unless_completed"] = unless_completed
    return jobs.enqueue(session, DIRECT_JOB, payload, dedupe_key=dedupe_key)


def alert_operators(session: Session, jobs: JobQueue, text: str, *, key: str) -> int | None:
    """Queue `text` for the operators inside the caller's transaction; `key` names the fact, so one
    incident alerts once (None: already queued)."""
    logger.warning("operator alert %s: %s", key, text)
    return jobs.enqueue(session, ALERT_JOB, {"text": text, "key": key}, dedupe_key=key)


class OperatorAlerter:
    """The `operator.alert` job handler: one direct message per operator, and the alert webhook."""

    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, admin_chat_ids: tuple[int, ...],
                 webhook: WebhookChannel | None = None):
        self.session_factory = session_factory
        self.jobs = jobs
        self.admin_chat_ids = admin_chat_ids
        self.webhook = webhook

    def fan_out(self, text: str, key: str) -> None:
        if not self.admin_chat_ids:
            if self.webhook is None:
                logger.error("operator alert %s has nobody to go to (ADMIN_CHAT_IDS and ALERT_WEBHOOK_URL are "
                             "empty): %s", key, text)
            return
        with self.session_factory.begin() as session:
            for chat_id in self.admin_chat_ids:
                queue_message(session, self.jobs, chat_id, ALERT_PREFIX + text, dedupe_key=f"operator:{key}:{chat_id}")

    async def __call__(self, job: ClaimedJob) -> None:
        key = job.payload.get("key") or str(job.id)
        await asyncio.to_thread(self.fan_out, job.payload["text"], key)
        if self.webhook is not None:
            # After the chats' messages are queued (their keys make a second fan-out a no-op): a
            # failed POST fails this job, which is retried and shown in /status, never dropped.
            await self.webhook.send(Alert(key, "degraded", job.payload["text"], status="notice"))


class DirectMessenger:
    """The `message.direct` job handler."""

    def __init__(self, session_factory: sessionmaker[Session], bot: Bot):
        self.session_factory = session_factory
        self.bot = bot

    def _completed(self, invoice_id: str) -> bool:
        with self.session_factory() as session:
            invoice = session.get(Invoice, invoice_id)
            return invoice is not None and invoice.status == InvoiceStatus.COMPLETED

    async def __call__(self, job: ClaimedJob) -> None:
        payload = job.payload
        chat_id = payload["chat_id"]
        if payload.get("unless_completed") and await asyncio.to_thread(self._completed, payload["unless_completed"]):
            logger.info("message job %s to %s dropped: invoice %s is completed", job.id, chat_id,
                        payload["unless_completed"])
            return
        markup = None
        if payload.get("button"):
            label, url = payload["button"]
            markup = InlineKeyboardMarkup([[InlineKeyboardButton(label, url=url)]])
        try:
            await self.bot.send_message(chat_id, payload["text"], reply_markup=markup)
        except Forbidden:
            logger.info("message job %s: chat %s blocked the bot; dropped", job.id, chat_id)
        except BadRequest as refused:
            # "chat not found" and the like will not get better by retrying for a day.
            logger.warning("message job %s to %s refused: %s", job.id, chat_id, refused.message)


class _Needs(Protocol):
    session_factory: sessionmaker[Session]
    jobs: JobQueue
    settings: Settings


def _messenger(services: _Needs, bot: Bot) -> DirectMessenger:
    return DirectMessenger(services.session_factory, bot)


def _alerter(services: _Needs, bot: Bot) -> OperatorAlerter:
    url = services.settings.alert_webhook_url
    return OperatorAlerter(services.session_factory, services.jobs, services.settings.admin_chat_ids,
                           WebhookChannel(url) if url else None)


# Kept 90 days: a message's dedupe key is what keeps a fact reprocessed later from saying it twice.
JOB_KINDS = (
    JobKind(DIRECT_JOB, _messenger, retention=timedelta(days=90)),
    JobKind(ALERT_JOB, _alerter, retention=timedelta(days=90)),
)
