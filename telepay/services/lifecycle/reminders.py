"""The `subscription.remind` job handler: "your access ends in …" with a Renew button.

The sweep queues one job per (subscription, expiry, offset) under a dedupe key, so each reminder
is queued once even across restarts. By the time the job runs the subscriber may have renewed
(the expiry moved: that term gets reminders of its own) or the time may have run out (the
removal message says it instead); either way this reminder is no longer true and is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot
from telegram.error import BadRequest, Forbidden

from telepay.clock import Clock
from telepay.logs import add_log_ids
from telepay.models import Channel, Subscription, SubscriptionStatus
from telepay.services.jobs import ClaimedJob
from telepay.services.lifecycle import texts
from telepay.services.lifecycle.removals import renew_markup
from telepay.services.subscriptions import micros

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Due:
    user_id: int
    expires_at: datetime
    key: str
    title: str


class Reminder:
    """Sends one reminder per job, if it is still true."""

    def __init__(self, session_factory: sessionmaker[Session], bot: Bot, clock: Clock):
        self.session_factory = session_factory
        self.bot = bot
        self.clock = clock

    def _still_due(self, subscription_id: int, expires_us: int) -> Due | None:
        with self.session_factory() as session:
            row = session.execute(
                select(Subscription, Channel).join(Channel, Channel.id == Subscription.channel_id)
                .where(Subscription.id == subscription_id)).first()
        if row is None:
            return None
        subscription, channel = row
        if (subscription.status != SubscriptionStatus.ACTIVE or micros(subscription.expires_at) != expires_us
                or subscription.expires_at <= self.clock.now()):
            return None
        return Due(subscription.user_id, subscription.expires_at, channel.key, channel.closed_title)

    async def __call__(self, job: ClaimedJob) -> None:
        subscription_id = job.payload["subscription_id"]
        due = await asyncio.to_thread(self._still_due, subscription_id, job.payload["expires_at_us"])
        if due is None:
            logger.info("remind job %s: subscription %s was renewed or has ended; reminder dropped",
                        job.id, subscription_id)
            return
        add_log_ids(user_id=due.user_id)
        text = texts.reminder(due.title, due.expires_at, due.expires_at - self.clock.now())
        try:
            await self.bot.send_message(due.user_id, text, reply_markup=renew_markup(due.key))
        except Forbidden:
            logger.info("remind job %s: user %s blocked the bot; not reminded", job.id, due.user_id)
            return
        except BadRequest as refused:
            logger.info("remind job %s: user %s could not be reminded: %s", job.id, due.user_id, refused.message)
            return
        logger.info("remind job %s: subscription %s reminded (%s s before expiry)", job.id, subscription_id,
                    job.payload["offset_seconds"])
