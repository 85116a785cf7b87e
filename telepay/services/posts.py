"""The bot's posts in channels: the `broadcast.post` job handler and the repost timer.

The open channel gets a subscription post with one deep-link button per tier, the closed one a
donation post. Each new post replaces the previous one of its kind, whose message id is kept
in `broadcast_posts`, so a restart neither posts twice nor leaves old posts behind. A post
is recorded the moment Telegram accepts it and only then is the old one deleted; the job can
run again after a crash at any point and converge on one post per kind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, TelegramError

from telepay.clock import Clock
from telepay.config import Settings
from telepay.models import BroadcastPost, Channel, ChannelStatus
from telepay.services.broadcasts import POST_JOB
from telepay.services import rights
from telepay.services.invoices import DONATE, payload_for
from telepay.services.jobs import ClaimedJob, JobKind, JobQueue
from telepay.services.setup import DEFAULT_DONATION_TEXT

logger = logging.getLogger(__name__)

SUBSCRIBE, DONATION = "subscribe", "donate"
TIMER_NAME = "broadcasts.repost"
# Telegram's answers that mean the bot may no longer post there (retrying will not help).
_RIGHTS_LOST = ("rights", "not a member", "chat not found", "kicked", "administrator", "not enough")


@dataclass(frozen=True)
class Post:
    chat_id: int
    kind: str
    text: str
    buttons: list[tuple[str, str]]  # (label, url)
    previous_message_id: int | None


def deep_link(bot_username: str, key: str, target: int | str) -> str:
    return f"https://t.me/{bot_username}?start={payload_for(key, target)}"


def _ways(channel: Channel, stars_only: bool) -> str:
    """How buyers may pay: the owner's switches, and only Stars when the operator runs STARS_ONLY."""
    if stars_only:
        return "in Telegram Stars"
    if channel.accept_stars and channel.accept_crypto:
        return "in Telegram Stars or crypto"
    return "in Telegram Stars" if channel.accept_stars else "in crypto"


def plan_posts(channel: Channel, previous: dict[tuple[int, str], int], bot_username: str,
               stars_only: bool = False) -> list[Post]:
    tiers = [tier for tier in channel.tiers if tier.active]
    subscribe = Post(
        channel.open_chat_id, SUBSCRIBE,
        f"🔒 {channel.closed_title}\n\nGet access to our members-only channel. Pick a plan below; "
        f"you'll pay {_ways(channel, stars_only)} and receive your personal invite link right after.",
        [(f"${tier.price_usd:,.2f} · {tier.days} days", deep_link(bot_username, channel.key, tier.number))
         for tier in tiers],
        previous.get((channel.open_chat_id, SUBSCRIBE)),
    )
    donation = Post(
        channel.closed_chat_id, DONATION, channel.donation_text or DEFAULT_DONATION_TEXT,
        [("💙 Donate", deep_link(bot_username, channel.key, DONATE))],
        previous.get((channel.closed_chat_id, DONATION)),
    )
    return [subscribe, donation]


class Poster:
    """The `broadcast.post` job handler: posts a channel's two posts, replacing the old ones."""

    def __init__(self, session_factory: sessionmaker[Session], bot: Bot, clock: Clock, bot_username: str,
                 jobs: JobQueue, stars_only: bool = False):
        self.stars_only = stars_only
        self.session_factory = session_factory
        self.bot = bot
        self.clock = clock
        self.bot_username = bot_username
        self.jobs = jobs

    def _plan(self, channel_id: int) -> tuple[list[Post], int, str] | None:
        with self.session_factory() as session:
            channel = session.get(Channel, channel_id)
            if channel is None or channel.status != ChannelStatus.ACTIVE:
                return None  # a paused pair posts nothing: it could not deliver what the post sells
            rows = session.scalars(select(BroadcastPost).where(BroadcastPost.channel_id == channel_id))
            previous = {(row.chat_id, row.kind): row.message_id for row in rows}
            posts = plan_posts(channel, previous, self.bot_username, self.stars_only)
            return posts, channel.owner_user_id, channel.open_title

    def _record(self, channel_id: int, post: Post, message_id: int) -> None:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            session.execute(
                insert(BroadcastPost)
                .values(channel_id=channel_id, chat_id=post.chat_id, kind=post.kind, message_id=message_id,
                        posted_at=now)
                .on_conflict_do_update(index_elements=["chat_id", "kind"],
                                       set_={"message_id": message_id, "posted_at": now, "channel_id": channel_id})
            )

    def _posted(self, channel_id: int) -> None:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            channel = session.get(Channel, channel_id, with_for_update=True)
            # Posting proves only the right to post: a pair is resumed by a full rights check
            # (`telepay.services.rights`), never by a post that went through.
            channel.next_post_at = now + timedelta(hours=channel.repost_interval_hours)

    def _lose_rights(self, channel_id: int, reason: str) -> bool:
        """Pause the pair (its owner and the operators are told once)."""
        with self.session_factory.begin() as session:
            return rights.pause(session, self.jobs, channel_id, reason, self.clock.now())

    async def __call__(self, job: ClaimedJob) -> None:
        channel_id = job.payload["channel_id"]
        planned = await asyncio.to_thread(self._plan, channel_id)
        if planned is None:
            logger.info("broadcast job %s: channel %s is not active; nothing posted", job.id, channel_id)
            return
        posts, owner_id, title = planned
        for post in posts:
            markup = InlineKeyboardMarkup([[InlineKeyboardButton(label, url=url)] for label, url in post.buttons])
            try:
                message = await self.bot.send_message(post.chat_id, post.text, reply_markup=markup)
            except (Forbidden, BadRequest) as refused:
                if isinstance(refused, BadRequest) and not any(s in refused.message.lower() for s in _RIGHTS_LOST):
                    raise
                await self._report_lost_rights(channel_id, owner_id, title, post, refused.message)
                return
            await asyncio.to_thread(self._record, channel_id, post, message.message_id)
            if post.previous_message_id and post.previous_message_id != message.message_id:
                try:
                    await self.bot.delete_message(post.chat_id, post.previous_message_id)
                except TelegramError as error:
                    # Too old (48 h) or already deleted by the owner: the new post stands anyway.
                    logger.info("channel %s: old %s post %s not deleted: %s", channel_id, post.kind,
                                post.previous_message_id, error)
        await asyncio.to_thread(self._posted, channel_id)
        logger.info("broadcast job %s: channel %s posted", job.id, channel_id)

    async def _report_lost_rights(self, channel_id: int, owner_id: int, title: str, post: Post, detail: str) -> None:
        where = "open" if post.kind == SUBSCRIBE else "closed"
        reason = f"I can't post in your {where} channel any more (Telegram says: {detail})."
        logger.warning("channel %s: lost rights in chat %s: %s", channel_id, post.chat_id, detail)
        await asyncio.to_thread(self._lose_rights, channel_id, reason)


class RepostTimer:
    """Queues the posts of every active channel whose repost time has come (run by a timer)."""

    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, clock: Clock):
        self.session_factory = session_factory
        self.jobs = jobs
        self.clock = clock

    def run_once(self) -> int:
        """One pass; returns how many channels were queued. Safe to run in several processes."""
        now = self.clock.now()
        queued = 0
        with self.session_factory.begin() as session:
            due = session.scalars(
                select(Channel).where(Channel.status == ChannelStatus.ACTIVE, Channel.next_post_at <= now)
                .with_for_update(skip_locked=True)).all()
            for channel in due:
                # One job per scheduled slot, whoever runs the timer and however often.
                slot = int(channel.next_post_at.timestamp())
                if self.jobs.enqueue(session, POST_JOB, {"channel_id": channel.id, "reason": "schedule"},
                                     dedupe_key=f"schedule:{channel.id}:{slot}") is not None:
                    queued += 1
        if queued:
            logger.info("repost timer queued %s channel(s)", queued)
        return queued


class _Needs(Protocol):
    session_factory: sessionmaker[Session]
    clock: Clock
    settings: Settings
    jobs: JobQueue


def _poster(services: _Needs, bot: Bot) -> Poster:
    return Poster(services.session_factory, bot, services.clock, services.settings.telegram_bot_username,
                  services.jobs, stars_only=services.settings.stars_only)


JOB_KINDS = (JobKind(POST_JOB, _poster),)
