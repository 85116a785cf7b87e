"""Alerts to the operators: queued as `alert.admins` jobs, delivered by the bot as a DM to every
id in ADMIN_CHAT_IDS. A dedupe key per fact keeps one incident from paging twice."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session
from telegram import Bot
from telegram.error import BadRequest, Forbidden

from telepay.services.jobs import ClaimedJob, JobQueue

logger = logging.getLogger(__name__)

ALERT_JOB = "alert.admins"


def alert_admins(session: Session, jobs: JobQueue, text: str, *, key: str) -> int | None:
    """Queue `text` for the operators inside the caller's transaction (None: already queued)."""
    logger.warning("operator alert %s: %s", key, text)
    return jobs.enqueue(session, ALERT_JOB, {"text": text}, dedupe_key=key)


class AdminAlerter:
    """The `alert.admins` job handler."""

    def __init__(self, bot: Bot, admin_chat_ids: tuple[int, ...]):
        self.bot = bot
        self.admin_chat_ids = admin_chat_ids

    async def __call__(self, job: ClaimedJob) -> None:
        if not self.admin_chat_ids:
            logger.error("alert job %s has nobody to go to (ADMIN_CHAT_IDS is empty): %s", job.id,
                         job.payload["text"])
            return
        for chat_id in self.admin_chat_ids:
            try:
                await self.bot.send_message(chat_id, "⚠️ TelePay: " + job.payload["text"])
            except (Forbidden, BadRequest) as refused:
                # An operator who never started the bot cannot be written to; the others still are.
                logger.error("alert job %s could not reach admin %s: %s", job.id, chat_id, refused.message)
