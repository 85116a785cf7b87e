"""Direct messages to buyers, donors and operators: queued inside the transaction that decides
them (so a rolled-back decision sends nothing), sent later by the worker.

Each message has a dedupe key naming what it is about (`buyer:<payment>:<status>`,
`operator:<reason>:<payment>:<chat>`), so a repeated IPN or a retried job never says it twice.
A person who blocked the bot is not retried for a day: Telegram will refuse every time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden

from telepay.models import Invoice, InvoiceStatus
from telepay.services.jobs import ClaimedJob, JobQueue

logger = logging.getLogger(__name__)

DIRECT_JOB = "message.direct"


def queue_message(session: Session, jobs: JobQueue, chat_id: int, text: str, *, dedupe_key: str,
                  button: tuple[str, str] | None = None, unless_completed: str | None = None) -> int | None:
    """Queue `text` for a private chat. `button` is (label, URL). With `unless_completed` (an
    invoice id) the message is dropped if that invoice is completed by the time it is sent: a
    "we have seen your payment" must not arrive after the invite it announces."""
    payload: dict = {"chat_id": chat_id, "text": text}
    if button:
        payload["button"] = list(button)
    if unless_completed:
        payload["unless_completed"] = unless_completed
    return jobs.enqueue(session, DIRECT_JOB, payload, dedupe_key=dedupe_key)


def alert_operators(session: Session, jobs: JobQueue, admin_chat_ids: Iterable[int], text: str, *,
                    key: str) -> None:
    """Queue `text` for every operator in ADMIN_CHAT_IDS (one job each, so one blocked operator
    does not hold the others' copies back)."""
    admins = list(admin_chat_ids)
    if not admins:
        logger.warning("operator alert %s has nobody to go to (ADMIN_CHAT_IDS is empty)", key)
    for chat_id in admins:
        queue_message(session, jobs, chat_id, "🛎 " + text, dedupe_key=f"operator:{key}:{chat_id}")


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
