"""Whether a channel pair can deliver what it sells, asked of Telegram, and what follows from it.

A pair needs the bot to post in the open channel and to post, invite and ban in the closed one.
When any of those is missing the pair is *paused* (`lost_rights`): it takes no new invoices and
gets no posts, its owner and the operators are told what to fix, and buyers who have paid wait
in the delivery queue (`telepay.services.delivery`). When Telegram shows the rights back (a
`my_chat_member` update, "Post now", or the periodic check) the pair resumes by itself and the
queue is let in. The same check asks whether the registering owner still administers both
chats; if not, their payouts are held (`channels.owner_lost_at`) and the operators are alerted.

Telegram is asked outside any transaction; each decision is then made and written in one short
transaction that re-reads the row, so the check can run from several places at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, ChatMember
from telegram.error import BadRequest, Forbidden, TelegramError

from telepay.clock import Clock
from telepay.models import Channel, ChannelStatus, Invite, InviteStatus, Payment
from telepay.services.channels import ADMINS, CLOSED, OPEN, REQUIRED_RIGHTS
from telepay.services.delivery import release_channel_payouts, review_overdue
from telepay.services.fulfilment import INVITE_JOB
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators, queue_message
from telepay.services.subscriptions import micros

logger = logging.getLogger(__name__)

TIMER_NAME = "channels.rights"
LIVE = (ChannelStatus.ACTIVE, ChannelStatus.LOST_RIGHTS)
# What owners are asked to fix, once, whatever right was lost.
FIX = ("Please make me an administrator again with the rights to post messages, invite users via "
       "link and ban users, in both channels. I'll notice by myself and carry on.")


@dataclass(frozen=True)
class PairCheck:
    missing: list[str]          # what the bot lacks, in the words Telegram's apps show owners
    owner_admin: bool | None    # None: Telegram would not say (the bot is not an admin there)

    @property
    def reason(self) -> str:
        return "I'm missing rights: " + "; ".join(self.missing) + "."


async def _member(bot: Bot, chat_id: int, user_id: int) -> ChatMember | None:
    try:
        return await bot.get_chat_member(chat_id, user_id)
    except (BadRequest, Forbidden):
        return None


async def missing_in(bot: Bot, chat_id: int, title: str, role: str) -> list[str]:
    """The rights the bot lacks in one chat for its role (all of them if it is no admin there)."""
    wanted = REQUIRED_RIGHTS[role]
    me = await _member(bot, chat_id, bot.id)
    if me is None or me.status not in ADMINS:
        return [f"admin in “{title}”"]
    if me.status == ChatMember.OWNER:
        return []
    return [f"“{label}” in “{title}”" for right, label in wanted.items() if not getattr(me, right, False)]


async def is_admin(bot: Bot, chat_id: int, user_id: int) -> bool | None:
    """Whether Telegram lists the user as creator or admin of the chat; None if it would not say."""
    member = await _member(bot, chat_id, user_id)
    return None if member is None else member.status in ADMINS


async def check_pair(bot: Bot, channel: Channel) -> PairCheck:
    missing = (await missing_in(bot, channel.open_chat_id, channel.open_title, OPEN)
               + await missing_in(bot, channel.closed_chat_id, channel.closed_title, CLOSED))
    answers = [await is_admin(bot, chat_id, channel.owner_user_id)
               for chat_id in (channel.open_chat_id, channel.closed_chat_id)]
    owner_admin = None if None in answers else all(answers)
    return PairCheck(missing, owner_admin)


def pause(session: Session, jobs: JobQueue, channel_id: int, reason: str, now: datetime) -> bool:
    """Pause an active pair for `reason`; tell its owner and the operators. True if this was news."""
    changed = session.execute(
        update(Channel).where(Channel.id == channel_id, Channel.status == ChannelStatus.ACTIVE)
        .values(status=ChannelStatus.LOST_RIGHTS, status_reason=reason, updated_at=now)
        .returning(Channel.owner_user_id, Channel.open_title)).first()
    if changed is None:
        return False
    owner_id, title = changed
    logger.warning("channel %s paused: %s", channel_id, reason)
    stamp = micros(now)
    queue_message(session, jobs, owner_id,
                  f"⚠️ “{title}” is paused: {reason}\n\nUntil this is fixed I take no new payments and "
                  f"post nothing, and anyone who has already paid waits to be let in.\n\n{FIX}",
                  dedupe_key=f"paused:{channel_id}:{stamp}")
    alert_operators(session, jobs,
                    f"Channel {channel_id} (“{title}”) paused: {reason} Its owner was told; it resumes by "
                    "itself when the rights are back.", key=f"paused:{channel_id}:{stamp}")
    return True


def resume(session: Session, jobs: JobQueue, channel_id: int, now: datetime) -> int:
    """Resume a paused pair and let its delivery queue in; how many waiting buyers were released."""
    changed = session.execute(
        update(Channel).where(Channel.id == channel_id, Channel.status == ChannelStatus.LOST_RIGHTS)
        .values(status=ChannelStatus.ACTIVE, status_reason=None, updated_at=now)
        .returning(Channel.owner_user_id, Channel.open_title, Channel.closed_chat_id)).first()
    if changed is None:
        return 0
    owner_id, title, closed_chat_id = changed
    waiting = list(session.scalars(select(Invite).where(
        Invite.chat_id == closed_chat_id, Invite.status == InviteStatus.WAITING).with_for_update()))
    stamp = micros(now)
    for invite in waiting:
        let_in(session, jobs, invite, now, "resumed")
    logger.info("channel %s resumed; %s waiting buyer(s) released", channel_id, len(waiting))
    # Buyers past the deadline were told a refund is coming, and one may be under way by hand:
    # letting them in instead is the operators' call, so they are named, not released.
    in_review = session.execute(
        select(Invite.user_id, func.max(Payment.id)).join(Payment, Payment.invoice_id == Invite.invoice_id)
        .where(Invite.chat_id == closed_chat_id, Invite.status == InviteStatus.REVIEW)
        .group_by(Invite.id, Invite.user_id).order_by(Invite.id)).all()
    if in_review:
        alert_operators(session, jobs, f"Channel {channel_id} (“{title}”) is live again. {len(in_review)} buyer(s) "
                        "moved to review for a refund can be let in instead, if not refunded yet: "
                        + "; ".join(f"user {user_id}: `telepay payments resolve {payment_id} --action deliver "
                                    '--reason "..."`' for user_id, payment_id in in_review[:20]),
                        key=f"resumed-review:{channel_id}:{stamp}")
    queue_message(session, jobs, owner_id,
                  f"✅ “{title}” is live again: I have every right I need. "
                  + (f"{len(waiting)} subscriber(s) who paid meanwhile are being let in now." if waiting else ""),
                  dedupe_key=f"resumed:{channel_id}:{stamp}")
    return len(waiting)


def let_in(session: Session, jobs: JobQueue, invite: Invite, now: datetime, why: str) -> None:
    """Take a buyer out of the delivery queue: their invite is made and sent by the invite job,
    which marks the purchase delivered and so releases the owner's held share."""
    invite.status, invite.waiting_since, invite.updated_at = InviteStatus.CREATED, None, now
    if invite.invoice_id:
        jobs.enqueue(session, INVITE_JOB, {"invoice_id": invite.invoice_id},
                     dedupe_key=f"{invite.invoice_id}:{why}:{micros(now)}")


class ChannelRights:
    """Checks pairs against Telegram and pauses, resumes or holds them accordingly."""

    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock, bot: Bot):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock
        self.bot = bot

    def _snapshot(self, channel_id: int) -> Channel | None:
        with self.session_factory() as session:
            channel = session.get(Channel, channel_id)
            if channel is None or channel.status not in LIVE:
                return None
            session.expunge(channel)
            return channel

    async def check(self, channel_id: int) -> PairCheck | None:
        """Ask Telegram about the pair and act on the answer; None if the pair is not live."""
        channel = await asyncio.to_thread(self._snapshot, channel_id)
        if channel is None:
            return None
        try:
            found = await check_pair(self.bot, channel)
        except TelegramError as error:  # a network error or a 429 is no news about rights
            logger.info("channel %s: rights not checked: %s", channel_id, error)
            return None
        await asyncio.to_thread(self._apply, channel, found)
        return found

    def _apply(self, channel: Channel, found: PairCheck) -> None:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            if found.missing:
                pause(session, self.jobs, channel.id, found.reason, now)
            else:
                resume(session, self.jobs, channel.id, now)
            if found.owner_admin is not None:
                owner_changed(session, self.jobs, channel.id, channel.owner_user_id, found.owner_admin, now)

    def _live_ids(self, chat_id: int | None = None) -> list[int]:
        with self.session_factory() as session:
            query = select(Channel.id).where(Channel.status.in_(LIVE))
            if chat_id is not None:
                query = query.where((Channel.open_chat_id == chat_id) | (Channel.closed_chat_id == chat_id))
            return list(session.scalars(query.order_by(Channel.id)))

    async def check_chat(self, chat_id: int) -> None:
        """A `my_chat_member` update for `chat_id`: check the pair it belongs to, if any."""
        for channel_id in await asyncio.to_thread(self._live_ids, chat_id):
            await self.check(channel_id)

    async def check_all(self) -> int:
        """The periodic check of every live pair; how many were checked."""
        ids = await asyncio.to_thread(self._live_ids)
        for channel_id in ids:
            await self.check(channel_id)
        return len(ids)

    def review_overdue(self) -> int:
        """Buyers who waited past the delivery deadline go to review (see `telepay.services.delivery`)."""
        with self.session_factory.begin() as session:
            return review_overdue(session, self.jobs, self.clock.now())


def owner_changed(session: Session, jobs: JobQueue, channel_id: int, owner_id: int, admin: bool,
                  now: datetime) -> None:
    """Record what Telegram says of the owner; hold (or release) their payouts on a change."""
    channel = session.get(Channel, channel_id, with_for_update=True)
    if channel is None or channel.owner_user_id != owner_id:
        return  # taken over meanwhile: the new owner is checked next time
    channel.owner_checked_at = now
    if not admin and channel.owner_lost_at is None:
        channel.owner_lost_at = now
        logger.warning("channel %s: owner %s no longer administers both chats; payouts held", channel_id, owner_id)
        alert_operators(session, jobs,
                        f"Channel {channel_id} (“{channel.open_title}”): its registered owner {owner_id} is no "
                        "longer an admin of both chats. Their payouts are held; the chat's creator can take "
                        "the pair over from “Add channels”.", key=f"owner-lost:{channel_id}:{micros(now)}")
    elif admin and channel.owner_lost_at is not None:
        channel.owner_lost_at = None
        logger.info("channel %s: owner %s is an admin again; payouts released", channel_id, owner_id)
        release_channel_payouts(session, jobs, channel_id, f"owner-back:{micros(now)}")
