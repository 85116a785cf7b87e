"""Access to closed channels: per-buyer join-request links, and the requests made with them.

A link is made for one subscriber (`creates_join_request`, named after our invoice) and recorded
before anything relies on it. The bot approves its owner's request, declines anyone else's, and
revokes the link once the subscriber is in. Database work runs in threads, one short transaction
each; Telegram is called between them, never inside one.

Idempotency of the invite job: the invite row is made first; the link is written to it right
after Telegram creates it (a second link made by a racing run is revoked); the message is sent
only while the invite is still `created`. A retry after a lost answer may resend the message,
which is harmless: it is the same link.

Delivery before money: an invite sent (or a buyer found already in) marks the invoice delivered,
which releases the owner's share (`telepay.services.delivery`). When the pair is paused, or
Telegram refuses to make a link, the buyer is told at once and waits in the delivery queue
(`waiting`); the pair is paused (`telepay.services.rights`) and its resumption lets them in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot, ChatMember, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, TelegramError

from telepay.clock import Clock
from telepay.errors import Conflict, NotFound
from telepay.models import Channel, ChannelStatus, Invite, InviteStatus, Invoice, Subscription, SubscriptionStatus
from telepay.services import rights
from telepay.services.delivery import DELIVERED_INVITES, DELIVERY_DEADLINE, mark_delivered
from telepay.services.fulfilment import INVITE_JOB, link_name, new_invite
from telepay.services.jobs import ClaimedJob, JobKind, JobQueue
from telepay.services.messages import queue_message
from telepay.services.payments import texts

logger = logging.getLogger(__name__)

__all__ = ["INVITE_JOB", "AccessService", "Decision", "InviteSender", "link_name"]

IN_CHAT = (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER)
OPEN = (InviteStatus.CREATED, InviteStatus.SENT, InviteStatus.UNDELIVERED)


class Decision:
    APPROVE, DECLINE, IGNORE = "approve", "decline", "ignore"


@dataclass(frozen=True)
class Target:
    """Who an invite is for and where to: what the Telegram calls need."""

    invite_id: int
    invoice_id: str | None
    channel_id: int
    paused: bool
    chat_id: int
    user_id: int
    title: str
    expires_at: datetime
    renewed: bool
    link: str | None
    status: InviteStatus


class AccessService:
    def __init__(self, session_factory: sessionmaker[Session], clock: Clock, jobs: JobQueue):
        self.session_factory = session_factory
        self.clock = clock
        self.jobs = jobs

    # ---- the invite job -------------------------------------------------------------------------

    async def send_invite(self, bot: Bot, invoice_id: str) -> InviteStatus | None:
        """Send the buyer of `invoice_id` their invite (or word that they are in already)."""
        target = await asyncio.to_thread(self._invite_for_invoice, invoice_id)
        if target is None or target.status not in (InviteStatus.CREATED,):
            return target.status if target else None
        if await self._is_member(bot, target.chat_id, target.user_id):
            await asyncio.to_thread(self._set_status, target.invite_id, InviteStatus.USED)
            await self._dm(bot, target, texts.already_member(target.title, target.expires_at), None)
            return InviteStatus.USED
        if target.paused:
            status = await asyncio.to_thread(self._wait, target, None)
            if status != InviteStatus.CREATED:
                return status  # queued (or handled by another run); the pair's resumption sends it
        try:
            link = target.link or await self._create_link(bot, target)
        except (BadRequest, Forbidden) as refused:
            # Telegram will not make links here: the bot lost the invite right (or the chat).
            detail = refused.message
            return await asyncio.to_thread(
                self._wait, target, f"I can't create invite links in “{target.title}” (Telegram says: {detail}).")
        delivered = await self._dm(bot, target, texts.invite(target.title, target.expires_at, target.renewed), link)
        status = InviteStatus.SENT if delivered else InviteStatus.UNDELIVERED
        await asyncio.to_thread(self._set_status, target.invite_id, status, InviteStatus.CREATED)
        logger.info("invoice %s: invite %s %s", invoice_id, target.invite_id, status.value)
        return status

    def _invite_for_invoice(self, invoice_id: str) -> Target | None:
        exists, target = self._made_at_fulfilment(invoice_id)
        return target if exists else self._make_invite(invoice_id)

    def _made_at_fulfilment(self, invoice_id: str) -> tuple[bool, Target | None]:
        """(whether the invoice has an invite, its target if its subscription is active): the newest
        invite, made with the grant, read in one statement without a lock. Nothing is written, so
        there is no commit to wait for before Telegram is asked."""
        now = self.clock.now()
        with self.session_factory() as session:
            row = session.execute(
                select(Invite, Subscription, Channel, Invoice.completed_at)
                .join(Subscription, Subscription.id == Invite.subscription_id)
                .join(Channel, Channel.id == Subscription.channel_id)  # (for `_target`, loaded here)
                .join(Invoice, Invoice.id == Invite.invoice_id)
                .where(Invite.invoice_id == invoice_id).order_by(Invite.id.desc()).limit(1)).one_or_none()
            if row is None:
                return False, None
            invite, subscription, _, completed_at = row
            if not _active(subscription, now):
                logger.warning("invoice %s: no active subscription to invite to", invoice_id)
                return True, None
            renewed = subscription.started_at < completed_at if completed_at else False
            return True, self._target(session, invite, subscription, renewed)

    def _make_invite(self, invoice_id: str) -> Target | None:
        """An invoice without an invite row (fulfilled before rows were made with the grant): made
        here, under the subscription's lock, so racing runs make one."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            invoice = session.get(Invoice, invoice_id)
            subscription = session.scalars(select(Subscription).where(
                Subscription.channel_id == invoice.channel_id, Subscription.user_id == invoice.buyer_user_id)
                .with_for_update()).one_or_none()
            if subscription is None or not _active(subscription, now):
                logger.warning("invoice %s: no active subscription to invite to", invoice_id)
                return None
            invite = session.scalars(select(Invite).where(Invite.invoice_id == invoice_id)
                                     .order_by(Invite.id.desc()).limit(1)).one_or_none()
            if invite is None:
                invite = self._new_invite(session, subscription, invoice_id, now)
            renewed = subscription.started_at < invoice.completed_at if invoice.completed_at else False
            return self._target(session, invite, subscription, renewed)

    def _wait(self, target: Target, pause_reason: str | None) -> InviteStatus:
        """Put the buyer in the delivery queue (and pause the pair for `pause_reason`); tell them once.
        `created` if the pair resumed meanwhile: the caller sends the invite now."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            # The pair's row lock orders this against `rights.resume`: either the pair resumed
            # first (the invite is sent now, not queued behind a resumption that already ran),
            # or the resumption comes after this commit and finds the invite waiting.
            channel = session.get(Channel, target.channel_id, with_for_update=True)
            if pause_reason:
                rights.pause(session, self.jobs, target.channel_id, pause_reason, now)
            elif channel.status != ChannelStatus.LOST_RIGHTS:
                return InviteStatus.CREATED
            invite = session.get(Invite, target.invite_id, with_for_update=True)
            if invite.status != InviteStatus.CREATED:
                return invite.status
            invite.status, invite.waiting_since, invite.updated_at = InviteStatus.WAITING, now, now
            hours = int(DELIVERY_DEADLINE.total_seconds() // 3600)
            queue_message(session, self.jobs, target.user_id,
                          f"✅ Payment received for “{target.title}”, thank you! I can't let you in just yet: "
                          "the channel's owner has to fix my permissions there first, and they have been told. "
                          "You're in the queue, and I'll send your personal invite the moment it's fixed. "
                          f"If that doesn't happen within {hours} hours, our team will refund you.",
                          dedupe_key=f"waiting:{invite.id}")
        logger.warning("invoice %s: invite %s waits for the channel's rights", target.invoice_id, target.invite_id)
        return InviteStatus.WAITING

    # ---- "Get my invite" --------------------------------------------------------------------------

    async def fresh_invite(self, bot: Bot, user_id: int, channel_key: str) -> tuple[str, str | None]:
        """A new link for a subscriber who lost theirs: (text, link); link None if already in.
        Their earlier open links are revoked, so only the newest works."""
        target, stale = await asyncio.to_thread(self._fresh_target, user_id, channel_key)
        if await self._is_member(bot, target.chat_id, user_id):
            await asyncio.to_thread(self._set_status, target.invite_id, InviteStatus.USED)
            return f"You're already in “{target.title}” — nothing to do. 🙂", None
        for invite_id, link in stale:
            await self._revoke(bot, target.chat_id, invite_id, link, InviteStatus.REVOKED)
        link = await self._create_link(bot, target)
        await asyncio.to_thread(self._set_status, target.invite_id, InviteStatus.SENT, InviteStatus.CREATED)
        return texts.fresh_invite(target.title), link

    def _fresh_target(self, user_id: int, channel_key: str) -> tuple[Target, list[tuple[int, str]]]:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            channel = session.scalars(select(Channel).where(Channel.key == channel_key)).one_or_none()
            subscription = None if channel is None else session.scalars(select(Subscription).where(
                Subscription.channel_id == channel.id, Subscription.user_id == user_id)
                .with_for_update()).one_or_none()
            if subscription is None or not _active(subscription, now):
                raise NotFound("You have no active subscription to this channel. Send /mysubs to see yours.")
            if channel.status == ChannelStatus.LOST_RIGHTS:
                raise Conflict(f"I can't let anyone into “{channel.closed_title}” right now: its owner has to "
                                  "fix my permissions there first, and they have been told. Your subscription is "
                                  "safe: please try again later.")
            stale = [(i.id, i.link) for i in session.scalars(select(Invite).where(
                Invite.chat_id == channel.closed_chat_id, Invite.user_id == user_id, Invite.status.in_(OPEN),
                Invite.link.is_not(None)))]
            invite = self._new_invite(session, subscription, subscription.last_invoice_id, now)
            return self._target(session, invite, subscription, True), stale

    # ---- join requests and joins ------------------------------------------------------------------

    async def on_join_request(self, bot: Bot, chat_id: int, user_id: int, link: str | None) -> str:
        """Approve the subscriber's own request on their link; decline anyone else's on our links."""
        decision, invite_id = await asyncio.to_thread(self._decide, chat_id, user_id, link)
        if decision == Decision.APPROVE:
            try:
                await bot.approve_chat_join_request(chat_id, user_id)
            except BadRequest as error:
                if "PARTICIPANT" not in error.message.upper():
                    logger.warning("invite %s: approving user %s failed: %s", invite_id, user_id, error.message)
                    return Decision.IGNORE
            logger.info("invite %s: approved user %s in chat %s", invite_id, user_id, chat_id)
            await self._revoke(bot, chat_id, invite_id, link, InviteStatus.USED)
        elif decision == Decision.DECLINE:
            try:
                await bot.decline_chat_join_request(chat_id, user_id)
            except BadRequest as error:
                logger.info("invite %s: declining user %s: %s", invite_id, user_id, error.message)
            logger.info("invite %s: declined user %s in chat %s", invite_id, user_id, chat_id)
        return decision

    async def on_member_joined(self, bot: Bot, chat_id: int, user_id: int, link: str | None) -> None:
        """The subscriber is in (however approved): their link is spent, so revoke it."""
        invite_id = await asyncio.to_thread(self._open_invite_of, chat_id, user_id, link)
        if invite_id is not None:
            await self._revoke(bot, chat_id, invite_id, link, InviteStatus.USED)

    def _decide(self, chat_id: int, user_id: int, link: str | None) -> tuple[str, int | None]:
        if not link:
            return Decision.IGNORE, None
        now = self.clock.now()
        with self.session_factory() as session:
            invite = session.scalars(select(Invite).where(Invite.link == link, Invite.chat_id == chat_id)).one_or_none()
            if invite is None:
                return Decision.IGNORE, None  # not our link: the owner's own links are theirs to manage
            subscription = session.get(Subscription, invite.subscription_id)
            if invite.user_id != user_id:
                logger.warning("invite %s: user %s tried the link of user %s", invite.id, user_id, invite.user_id)
                return Decision.DECLINE, invite.id
            if invite.status not in OPEN or not _active(subscription, now):
                return Decision.DECLINE, invite.id
            return Decision.APPROVE, invite.id

    def _open_invite_of(self, chat_id: int, user_id: int, link: str | None) -> int | None:
        if not link:
            return None
        with self.session_factory() as session:
            return session.scalars(select(Invite.id).where(
                Invite.link == link, Invite.chat_id == chat_id, Invite.user_id == user_id,
                Invite.status.in_(OPEN))).one_or_none()

    # ---- shared steps -----------------------------------------------------------------------------

    @staticmethod
    def _new_invite(session: Session, subscription: Subscription, invoice_id: str | None, now: datetime) -> Invite:
        invite = new_invite(session, subscription, invoice_id, now)
        session.flush()
        return invite

    @staticmethod
    def _target(session: Session, invite: Invite, subscription: Subscription, renewed: bool) -> Target:
        channel = session.get(Channel, subscription.channel_id)
        return Target(invite.id, invite.invoice_id, channel.id, channel.status == ChannelStatus.LOST_RIGHTS,
                      invite.chat_id, invite.user_id, channel.closed_title, subscription.expires_at, renewed,
                      invite.link, invite.status)

    async def _create_link(self, bot: Bot, target: Target) -> str:
        created = await bot.create_chat_invite_link(target.chat_id, name=link_name(target.invoice_id, target.user_id),
                                                    creates_join_request=True)
        kept = await asyncio.to_thread(self._record_link, target.invite_id, created.invite_link)
        if kept != created.invite_link:
            # A racing run recorded its link first: use that one, and leave no spare link open.
            await self._revoke_quietly(bot, target.chat_id, created.invite_link)
        return kept

    def _record_link(self, invite_id: int, link: str) -> str:
        with self.session_factory.begin() as session:
            invite = session.get(Invite, invite_id, with_for_update=True)
            if invite.link is None:
                invite.link, invite.updated_at = link, self.clock.now()
                logger.info("invite %s: link created for user %s", invite_id, invite.user_id)
            return invite.link

    def _set_status(self, invite_id: int, status: InviteStatus, only_from: InviteStatus | None = None) -> None:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            invite = session.get(Invite, invite_id, with_for_update=True)
            if only_from is not None and invite.status != only_from:
                return
            invite.status, invite.updated_at = status, now
            if status in DELIVERED_INVITES and invite.invoice_id:
                mark_delivered(session, self.jobs, invite.invoice_id, now)
            if status == InviteStatus.USED:
                invite.used_at = invite.used_at or now
            if status in (InviteStatus.USED, InviteStatus.REVOKED) and invite.link:
                invite.revoked_at = invite.revoked_at or now

    async def _revoke(self, bot: Bot, chat_id: int, invite_id: int, link: str | None, status: InviteStatus) -> None:
        """Revoke at Telegram first, then record it: a failure leaves the invite open to try again."""
        if link:
            await self._revoke_quietly(bot, chat_id, link)
        await asyncio.to_thread(self._set_status, invite_id, status)
        logger.info("invite %s: %s, link revoked", invite_id, status.value)

    @staticmethod
    async def _revoke_quietly(bot: Bot, chat_id: int, link: str) -> None:
        try:
            await bot.revoke_chat_invite_link(chat_id, link)
        except BadRequest as error:
            logger.info("revoking a link in chat %s: %s", chat_id, error.message)  # gone already

    @staticmethod
    async def _is_member(bot: Bot, chat_id: int, user_id: int) -> bool:
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as error:
            logger.info("membership of user %s in chat %s unknown: %s", user_id, chat_id, error)
            return False
        return member.status in IN_CHAT

    @staticmethod
    async def _dm(bot: Bot, target: Target, text: str, link: str | None) -> bool:
        markup = (InlineKeyboardMarkup([[InlineKeyboardButton(texts.join_button(target.title), url=link)]])
                  if link else None)
        try:
            await bot.send_message(target.user_id, text, reply_markup=markup)
            return True
        except (Forbidden, BadRequest) as error:
            logger.info("invite %s: user %s cannot be messaged: %s", target.invite_id, target.user_id, error)
            return False


def _active(subscription: Subscription, now: datetime) -> bool:
    return subscription.status == SubscriptionStatus.ACTIVE and subscription.expires_at > now


class InviteSender:
    """The `invite.send` job handler."""

    def __init__(self, access: AccessService, bot: Bot):
        self.access = access
        self.bot = bot

    async def __call__(self, job: ClaimedJob) -> None:
        await self.access.send_invite(self.bot, job.payload["invoice_id"])


class _Needs(Protocol):
    access: AccessService


def _invites(services: _Needs, bot: Bot) -> InviteSender:
    return InviteSender(services.access, bot)


JOB_KINDS = (JobKind(INVITE_JOB, _invites, inline=True),)
