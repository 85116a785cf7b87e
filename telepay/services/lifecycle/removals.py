"""The `subscription.expire` job handler: removes a subscriber whose time ran out from the
closed channel (ban, then unban so they can come back by paying) and tells them how to renew.

Idempotent: banning and unbanning someone who is already out changes nothing, so a retried job
is safe. The subscription's row stays locked while the ban and unban are made, and the job first
checks the row still is the expired term it was queued for: a buyer whose renewal lands at that
moment waits for the lock, and is then extended and invited afresh, instead of being removed
after paying. Outcomes by case:

- the user already left (or never joined): ban and unban succeed anyway; no error;
- the user blocked the bot: they are removed, the message is skipped;
- the bot lost its rights in the channel: the channel is marked `lost_rights`, its owner and
  the operators are told once, and the job fails so the queue retries it with backoff until
  the rights come back (the removal is never dropped); other channels' jobs go on;
- Telegram says 429: the bot's rate limiter waits `retry_after` and retries; if that still
  fails, the job fails and the queue runs it again later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden

from telepay.clock import Clock
from telepay.models import Channel, ChannelStatus, Subscription, SubscriptionStatus
from telepay.services.jobs import ClaimedJob, JobQueue
from telepay.services.lifecycle import texts
from telepay.services.lifecycle.sweep import micros
from telepay.services.messages import alert_operators
from telepay.services.notifications import request_owner_notification

logger = logging.getLogger(__name__)

# Telegram's answers meaning the user is not there to remove (unconfirmed wordings vary).
_USER_GONE = ("user not found", "participant_id_invalid", "user_not_participant", "user_id_invalid")
# The user cannot be removed by a bot at all: they are the owner or an administrator.
_UNREMOVABLE = ("can't remove chat owner", "user is an administrator", "user_admin_invalid")


class RemovalDeferred(Exception):
    """The bot cannot remove anyone from this channel right now; the job is retried later."""


@dataclass(frozen=True)
class Target:
    subscription_id: int
    user_id: int
    channel_id: int
    chat_id: int
    key: str
    title: str


def renew_markup(channel_key: str) -> InlineKeyboardMarkup:
    label, data = texts.renew_button(channel_key)
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]])


class Remover:
    """Removes one expired subscriber per job."""

    def __init__(self, session_factory: sessionmaker[Session], bot: Bot, jobs: JobQueue, clock: Clock):
        self.session_factory = session_factory
        self.bot = bot
        self.jobs = jobs
        self.clock = clock

    def _lock(self, session: Session, subscription_id: int, expires_us: int) -> Target | None:
        """Lock the subscription; the target if it still is the expired term the job was made for."""
        row = session.execute(
            select(Subscription, Channel).join(Channel, Channel.id == Subscription.channel_id)
            .where(Subscription.id == subscription_id).with_for_update(of=Subscription)).first()
        if row is None:
            return None
        subscription, channel = row
        if subscription.status != SubscriptionStatus.EXPIRED or micros(subscription.expires_at) != expires_us:
            return None  # renewed since the sweep found it due: a paying member stays
        return Target(subscription.id, subscription.user_id, channel.id, channel.closed_chat_id, channel.key,
                      channel.closed_title)

    async def __call__(self, job: ClaimedJob) -> None:
        subscription_id, expires_us = job.payload["subscription_id"], job.payload["expires_at_us"]
        session = self.session_factory()
        try:
            target = await asyncio.to_thread(self._lock, session, subscription_id, expires_us)
            if target is None:
                logger.info("expire job %s: subscription %s was renewed or is gone; nobody removed",
                            job.id, subscription_id)
                return
            await self._remove(job, target)
            await asyncio.to_thread(session.commit)
        finally:
            await asyncio.to_thread(session.close)
        await self._tell(job, target)

    async def _remove(self, job: ClaimedJob, target: Target) -> None:
        try:
            await self.bot.ban_chat_member(target.chat_id, target.user_id)
            await self.bot.unban_chat_member(target.chat_id, target.user_id, only_if_banned=True)
        except (BadRequest, Forbidden) as refused:
            detail = refused.message
            lowered = detail.lower()
            if isinstance(refused, BadRequest) and any(s in lowered for s in _USER_GONE):
                logger.info("expire job %s: user %s is not in chat %s (%s)", job.id, target.user_id,
                            target.chat_id, detail)
            elif isinstance(refused, BadRequest) and any(s in lowered for s in _UNREMOVABLE):
                logger.warning("expire job %s: user %s is an owner or admin of chat %s and stays (%s)",
                               job.id, target.user_id, target.chat_id, detail)
            else:
                # Forbidden (not a member, kicked) or "not enough rights" / "chat not found".
                await asyncio.to_thread(self._lose_rights, target, detail)
                raise RemovalDeferred(f"channel {target.channel_id} lost rights: {detail}") from refused
        logger.info("expire job %s: subscription %s ended, user %s removed from chat %s", job.id,
                    target.subscription_id, target.user_id, target.chat_id)

    def _lose_rights(self, target: Target, detail: str) -> None:
        """Mark the channel; tell its owner and the operators only when this is news."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            changed = session.execute(
                update(Channel).where(Channel.id == target.channel_id, Channel.status == ChannelStatus.ACTIVE)
                .values(status=ChannelStatus.LOST_RIGHTS, updated_at=now,
                        status_reason=f"I can't remove members from your closed channel (Telegram says: {detail})."))
            if changed.rowcount != 1:
                return
            logger.warning("channel %s: lost the rights to remove members from chat %s: %s", target.channel_id,
                           target.chat_id, detail)
            request_owner_notification(session, self.jobs, target.channel_id,
                                       texts.owner_lost_rights(target.title, detail),
                                       idempotency_key=f"lost-rights:{micros(now)}")
            alert_operators(session, self.jobs,
                            texts.operators_lost_rights(target.channel_id, target.title, target.chat_id, detail),
                            key=f"lost-rights:{target.channel_id}:{micros(now)}")

    async def _tell(self, job: ClaimedJob, target: Target) -> None:
        try:
            await self.bot.send_message(target.user_id, texts.ended(target.title),
                                        reply_markup=renew_markup(target.key))
        except Forbidden:
            logger.info("expire job %s: user %s blocked the bot; not told", job.id, target.user_id)
        except BadRequest as refused:
            # "chat not found": they never started the bot from this account; nothing to retry.
            logger.info("expire job %s: user %s could not be told: %s", job.id, target.user_id, refused.message)
        # Anything else (a 429 that outlasted the rate limiter's retries, a network error) fails
        # the job: its retry bans and unbans again, harmlessly, and then says it once.
