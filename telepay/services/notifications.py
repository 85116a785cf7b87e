"""Messages to channel owners: queued by callers, delivered by the worker.

An owner who blocked the bot is marked on the channel and not retried for ever; they are
written to again once they talk to the bot (the bot clears the mark).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot
from telegram.error import BadRequest, Forbidden

from telepay.errors import NotFound
from telepay.models import Channel
from telepay.services.jobs import ClaimedJob, JobKind, JobQueue

logger = logging.getLogger(__name__)

NOTIFY_JOB = "notification.owner"


def request_owner_notification(session: Session, jobs: JobQueue, channel_id: int, text: str,
                               idempotency_key: str | None = None) -> int | None:
    """Queue `text` for the channel's owner. Returns the job id (None: already queued under that key)."""
    if session.get(Channel, channel_id) is None:
        raise NotFound(f"No channel with id {channel_id}.", code="unknown_channel")
    dedupe = f"{channel_id}:{idempotency_key}" if idempotency_key else None
    return jobs.enqueue(session, NOTIFY_JOB, {"channel_id": channel_id, "text": text}, dedupe_key=dedupe)


class OwnerNotifier:
    """The `notification.owner` job handler."""

    def __init__(self, session_factory: sessionmaker[Session], bot: Bot):
        self.session_factory = session_factory
        self.bot = bot

    def _target(self, channel_id: int) -> tuple[int | None, bool]:
        with self.session_factory() as session:
            channel = session.get(Channel, channel_id)
            if channel is None:
                return None, False
            return channel.notify_chat_id or channel.owner_user_id, channel.owner_blocked_bot

    def _mark_blocked(self, channel_id: int) -> None:
        with self.session_factory.begin() as session:
            session.execute(update(Channel).where(Channel.id == channel_id).values(owner_blocked_bot=True))

    async def __call__(self, job: ClaimedJob) -> None:
        channel_id = job.payload["channel_id"]
        chat_id, blocked = await asyncio.to_thread(self._target, channel_id)
        if chat_id is None:
            logger.warning("notification job %s: channel %s is gone; dropped", job.id, channel_id)
            return
        if blocked:
            logger.info("notification job %s: owner of channel %s blocked the bot; skipped", job.id, channel_id)
            return
        try:
            await self.bot.send_message(chat_id, job.payload["text"])
        except Forbidden:
            await asyncio.to_thread(self._mark_blocked, channel_id)
            logger.info("owner of channel %s blocked the bot; marked", channel_id)
        except BadRequest as refused:
            # "chat not found" and the like will not get better by retrying for a day.
            logger.warning("notification job %s for channel %s refused: %s", job.id, channel_id, refused.message)


class _Needs(Protocol):
    session_factory: sessionmaker[Session]


def _notifier(services: _Needs, bot: Bot) -> OwnerNotifier:
    return OwnerNotifier(services.session_factory, bot)


JOB_KINDS = (JobKind(NOTIFY_JOB, _notifier, retention=timedelta(days=90)),)
