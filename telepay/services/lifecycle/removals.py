"""The `subscription.expire` job handler: removes a subscriber whose time ran out from the
closed channel (ban, then unban so they can come back by paying) and tells them how to renew.

Only a ban the bot makes for expiry is ever lifted. The member's status is read first: someone
the owner has banned (`kicked`) is left exactly as they are. Otherwise the bot writes down that
it is banning them for this term (`subscriptions.removal_banned_for`, committed before the ban),
so a retry after a crash between ban and unban knows the ban is its own and lifts it.

Idempotent: banning and unbanning someone who is already out changes nothing, so a retried job
is safe. The subscription's row stays locked while the ban and unban are made, and the job first
checks the row still is the expired term it was queued for: a buyer whose renewal lands at that
moment waits for the lock, and is then extended and invited afresh, instead of being removed
after paying. Outcomes by case:

- the user already left (or never joined): ban and unban succeed anyway; no error;
- the user blocked the bot: they are removed, the message is skipped;
- the owner banned the user themselves: nothing is done to them, the ban stays;
- the bot lost its rights in the channel: the pair is paused (`telepay.services.rights`), its owner
  and the operators are told once, and the job fails so the queue retries it with backoff until
  the rights come back (the removal is never dropped); other channels' jobs go on;
- Telegram says 429: the bot's rate limiter waits `retry_after` and retries; if that still
  fails, the job fails and the queue runs it again later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, ChatMember, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden

from telepay.clock import Clock
from telepay.logs import add_log_ids
from telepay.models import Channel, Subscription, SubscriptionStatus
from telepay.services import rights
from telepay.services.jobs import ClaimedJob, JobQueue
from telepay.services.lifecycle import texts
from telepay.services.subscriptions import micros

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
    banned_by_us: bool  # the bot wrote down, before banning, that it bans them for this term


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
        ours = subscription.removal_banned_for is not None and \
            micros(subscription.removal_banned_for) == expires_us
        return Target(subscription.id, subscription.user_id, channel.id, channel.closed_chat_id, channel.key,
                      channel.closed_title, ours)

    def _mark_ban(self, session: Session, subscription_id: int) -> None:
        """Write down, and commit, that the bot bans this user for this term: before the ban."""
        subscription = session.get(Subscription, subscription_id)
        subscription.removal_banned_for = subscription.expires_at
        session.commit()

    async def __call__(self, job: ClaimedJob) -> None:
        subscription_id, expires_us = job.payload["subscription_id"], job.payload["expires_at_us"]
        session = self.session_factory()
        try:
            target = await asyncio.to_thread(self._lock, session, subscription_id, expires_us)
            if target is None:
                logger.info("expire job %s: subscription %s was renewed or is gone; nobody removed",
                            job.id, subscription_id)
                return
            add_log_ids(user_id=target.user_id, chat_id=target.chat_id)  # the job's lines name whom it removes
            if not target.banned_by_us:
                if await self._banned_by_owner(job, target):
                    await asyncio.to_thread(session.commit)
                    return
                await asyncio.to_thread(self._mark_ban, session, subscription_id)
                # The lock went with that commit: take it again, and stop if a renewal came in between.
                target = await asyncio.to_thread(self._lock, session, subscription_id, expires_us)
                if target is None:
                    logger.info("expire job %s: subscription %s renewed meanwhile; nobody removed",
                                job.id, subscription_id)
                    return
            await self._remove(job, target)
            await asyncio.to_thread(session.commit)
        finally:
            await asyncio.to_thread(session.close)
        await self._tell(job, target)

    async def _banned_by_owner(self, job: ClaimedJob, target: Target) -> bool:
        """True if the user is banned and the bot did not do it: that ban is the owner's, and stays."""
        try:
            member = await self.bot.get_chat_member(target.chat_id, target.user_id)
        except (BadRequest, Forbidden):
            return False  # unknown: the ban below says why (gone user, or lost rights)
        if member.status != ChatMember.BANNED:
            return False
        logger.info("expire job %s: user %s was banned from chat %s by its owner; the ban stays", job.id,
                    target.user_id, target.chat_id)
        return True

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
        """Pause the pair; its owner and the operators are told only when this is news."""
        with self.session_factory.begin() as session:
            rights.pause(session, self.jobs, target.channel_id,
                         f"I can't remove subscribers whose time has run out from “{target.title}” "
                         f"(Telegram says: {detail}).", self.clock.now())

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
