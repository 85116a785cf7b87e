"""Messages to channel owners: queued by callers, delivered by the worker.

An owner who blocked the bot is marked on the channel and not retried for ever; they are
written to again once they talk to the bot (the bot clears the mark). A notification chat the
owner chose is checked again before each use (the owner still administers it, the bot can post
there); if it fails, the message goes to the owner's private chat instead, saying why.
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
from telepay.services.channels import notification_target_problem
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

    def _target(self, channel_id: int) -> tuple[int | None, int | None, bool]:
        """(the owner, the chat they chose or None, whether the owner blocked the bot)."""
        with self.session_factory() as session:
            channel = session.get(Channel, channel_id)
            if channel is None:
                return None, None, False
            return channel.owner_user_id, channel.notify_chat_id, channel.owner_blocked_bot

    def _mark_blocked(self, channel_id: int) -> None:
        with self.session_factory.begin() as session:
            session.execute(update(Channel).where(Channel.id == channel_id).values(owner_blocked_bot=True))

    async def __call__(self, job: ClaimedJob) -> None:
        channel_id = job.payload["channel_id"]
        owner_id, chosen, blocked = await asyncio.to_thread(self._target, channel_id)
        chat_id, text = owner_id, job.payload["text"]
        if chosen is not None and chosen != owner_id:
            problem = await notification_target_problem(self.bot, chosen, owner_id)
            if problem is None:
                chat_id = chosen
            else:
                logger.warning("notification job %s: chat %s refused for channel %s: %s", job.id, chosen,
                               channel_id, problem)
                text = (f"{text}\n\n(This was meant for your notification chat {chosen}, but: {problem} "
                        "Change it under My channels → Setup → Notifications.)")
        if chat_id is None:
            logger.warning("notification job %s: channel %s is gone; dropped", job.id, channel_id)
            return
        if blocked:
            logger.info("notification job %s: owner of channel %s blocked the bot; skipped", job.id, channel_id)
            return
        try:
            await self.bot.send_message(chat_id, text)
        except Forbidden:
            if chat_id != owner_id:
                logger.warning("notification job %s: chat %s refused the bot", job.id, chat_id)
                return
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
