"""Channel pairs: checking that a pair may be registered, registering it, and owners' lookups.

The checks ask Telegram (through the bot) what the bot and the owner may do in each chat and
describe every problem in words the owner can act on. Registration is database work inside the
caller's transaction; a chat belongs to at most one pair. The creator of a pair's chats can take
it over from whoever registered it (`take_over`).
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from telegram import Bot, ChatMember
from telegram.error import BadRequest, Forbidden

from telepay.errors import Conflict, InvalidInput, NotFound
from telepay.models import AuditLog, Channel, ChannelStatus, Payout, PayoutStatus
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators, queue_message

logger = logging.getLogger(__name__)

OPEN, CLOSED = "open", "closed"

# What the bot must be allowed to do, per role, with the names Telegram's apps show owners.
REQUIRED_RIGHTS = {
    OPEN: {"can_post_messages": "Post messages"},
    CLOSED: {
        "can_post_messages": "Post messages",
        "can_invite_users": "Invite users via link",
        "can_restrict_members": "Ban users",
    },
}
ADMINS = (ChatMember.OWNER, ChatMember.ADMINISTRATOR)
KEY_ALPHABET = string.ascii_letters + string.digits
_USERNAME = re.compile(r"^(?:@|(?:https?://)?t\.me/)?([A-Za-z][A-Za-z0-9_]{3,31})$")
_CHAT_ID = re.compile(r"^-?\d{5,20}$")


@dataclass(frozen=True)
class ChatInfo:
    id: int
    title: str
    username: str | None


def parse_chat_reference(text: str) -> int | str:
    """A chat id or "@username" from what an owner typed (an id, @name or a t.me link)."""
    text = text.strip()
    if _CHAT_ID.match(text):
        return int(text)
    match = _USERNAME.match(text)
    if match:
        return "@" + match.group(1)
    raise InvalidInput(
        "I could not read that as a channel. Forward me any post from the channel, or send its "
        "@username or its numeric id (it starts with -100)."
    )


async def identify_chat(bot: Bot, reference: int | str) -> ChatInfo:
    """Look the chat up on Telegram; it must be a channel the bot can see."""
    try:
        chat = await bot.get_chat(reference)
    except (BadRequest, Forbidden):
        raise InvalidInput(
            f"I can't see the channel {reference}. Add me to it as an administrator first, "
            "then send it again."
        ) from None
    if chat.type != "channel":
        raise InvalidInput(f"“{chat.title or reference}” is not a channel. Please send a channel.")
    return ChatInfo(chat.id, chat.title or str(chat.id), chat.username)


async def check_chat(bot: Bot, chat: ChatInfo, user_id: int, role: str) -> list[str]:
    """Everything that stops this chat serving as the pair's `role` channel for this user."""
    problems: list[str] = []
    if role == OPEN and not chat.username:
        problems.append(f"“{chat.title}” is private, but subscribers must be able to find the "
                        "open channel: give it a public @username.")
    if role == CLOSED and chat.username:
        problems.append(f"“{chat.title}” is public (@{chat.username}), so anyone could join it "
                        "without paying: make it a private channel.")
    wanted = REQUIRED_RIGHTS[role]
    try:
        me = await bot.get_chat_member(chat.id, bot.id)
    except (BadRequest, Forbidden):
        me = None
    if me is None or me.status not in ADMINS:
        problems.append(f"I am not an administrator of “{chat.title}”. Make me an admin with "
                        "these rights: " + ", ".join(wanted.values()) + ".")
        return problems  # without admin rights Telegram will not tell us who else is an admin
    missing = [label for right, label in wanted.items()
               if me.status != ChatMember.OWNER and not getattr(me, right, False)]
    if missing:
        problems.append(f"In “{chat.title}” I am an admin but I am missing: " + ", ".join(missing) + ".")
    try:
        member = await bot.get_chat_member(chat.id, user_id)
        is_admin = member.status in ADMINS
    except (BadRequest, Forbidden):
        is_admin = False
    if not is_admin:
        problems.append(f"You are not the creator or an administrator of “{chat.title}”.")
    return problems


async def notification_target_problem(bot: Bot, chat_id: int, owner_id: int) -> str | None:
    """Why the bot may not send an owner's sale notices to this chat, or None if it may.

    The owner must administer the chat (so nobody can make the bot post into someone else's
    chat), and the bot must be able to post there. Asked when the target is set and again
    before every use: either can change at any time.
    """
    try:
        owner = await bot.get_chat_member(chat_id, owner_id)
        me = await bot.get_chat_member(chat_id, bot.id)
    except (BadRequest, Forbidden):
        return "I can't see that chat. Add me to it first, then send it again."
    if owner.status not in ADMINS:
        return "You must be an administrator of that chat to send notifications there."
    if me.status == ChatMember.OWNER:
        return None
    chat = await bot.get_chat(chat_id)
    if chat.type == "channel":
        can_post = me.status == ChatMember.ADMINISTRATOR and bool(getattr(me, "can_post_messages", False))
    else:
        can_post = me.status in (ChatMember.MEMBER, ChatMember.ADMINISTRATOR) or (
            me.status == ChatMember.RESTRICTED and bool(getattr(me, "can_send_messages", False)))
    if not can_post:
        return "I can't post in that chat: make me able to post messages there first."
    return None


def new_key() -> str:
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(10))


def register_pair(session: Session, owner_user_id: int, open_chat: ChatInfo, closed_chat: ChatInfo) -> Channel:
    """Create the pair, or return it if this owner registered exactly this pair already."""
    if open_chat.id == closed_chat.id:
        raise InvalidInput("The open and the closed channel must be two different channels.")
    ids = (open_chat.id, closed_chat.id)
    taken = session.scalars(
        select(Channel).where(or_(Channel.open_chat_id.in_(ids), Channel.closed_chat_id.in_(ids)))
    ).all()
    for channel in taken:
        if channel.owner_user_id != owner_user_id:
            name = open_chat.title if open_chat.id in (channel.open_chat_id, channel.closed_chat_id) \
                else closed_chat.title
            raise Conflict(f"“{name}” is already registered with TelePay by someone else, so I "
                           "can't register it again. If you think this is a mistake, contact support.",
                           code="taken")
        if (channel.open_chat_id, channel.closed_chat_id) == ids:
            return channel
        raise Conflict("One of these channels is already part of another pair of yours. "
                       "Pick two channels that are not registered yet.", code="taken")
    channel = Channel(key=new_key(), owner_user_id=owner_user_id, open_chat_id=open_chat.id,
                      closed_chat_id=closed_chat.id, open_title=open_chat.title[:255],
                      closed_title=closed_chat.title[:255], status=ChannelStatus.SETUP)
    session.add(channel)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Someone registered one of the chats between our check and our insert.
        raise Conflict("One of these channels was just registered by someone else.", code="taken") from None
    logger.info("channel %s registered by user %s (open %s, closed %s)", channel.id, owner_user_id,
                open_chat.id, closed_chat.id)
    return channel


def registered_by_other(session: Session, open_chat_id: int, closed_chat_id: int, user_id: int) -> Channel | None:
    """The pair of exactly these two chats, if someone other than `user_id` registered it."""
    return session.scalars(select(Channel).where(
        Channel.open_chat_id == open_chat_id, Channel.closed_chat_id == closed_chat_id,
        Channel.owner_user_id != user_id)).one_or_none()


def take_over(session: Session, jobs: JobQueue, channel_id: int, creator_id: int, now: datetime) -> int:
    """The chat's creator takes the pair over from whoever registered it; returns the old owner.

    The old owner's wallet and notification chat go with them (the pair is back in setup until
    the creator saves their own), both are told, an audit row keeps who and what, and the
    payouts still owed from the old registration wait for the operators, who decide who is owed.
    """
    channel = session.get(Channel, channel_id, with_for_update=True)
    old = channel.owner_user_id
    before = {"owner_user_id": old, "payout_currency": channel.payout_currency,
              "payout_network": channel.payout_network, "payout_address": channel.payout_address,
              "notify_chat_id": channel.notify_chat_id, "status": channel.status.value}
    channel.owner_user_id, channel.owner_lost_at, channel.owner_checked_at = creator_id, None, now
    channel.payout_currency = channel.payout_network = channel.payout_address = None
    channel.notify_chat_id, channel.updated_at = None, now
    if channel.status in (ChannelStatus.ACTIVE, ChannelStatus.LOST_RIGHTS):
        channel.status, channel.status_reason = ChannelStatus.SETUP, None
    held = session.execute(
        update(Payout).where(Payout.channel_id == channel_id,
                             Payout.status.in_([PayoutStatus.PENDING, PayoutStatus.CARRIED_OVER]))
        .values(resume_status=Payout.status, status=PayoutStatus.NEEDS_REVIEW, updated_at=now,
                last_error="the pair was taken over by its chat's creator: decide who is owed")
        .returning(Payout.id)).scalars().all()
    session.add(AuditLog(channel_id=channel_id, actor_user_id=creator_id, action="owner.takeover", before=before,
                         after={"owner_user_id": creator_id, "payouts_to_review": list(held)}, created_at=now))
    queue_message(session, jobs, old,
                  f"ℹ️ “{channel.open_title}” was taken over by the creator of its channels, so it is no longer "
                  "registered to you. If you think this is a mistake, contact support.",
                  dedupe_key=f"takeover:{channel_id}:{int(now.timestamp())}")
    alert_operators(session, jobs,
                    f"Channel {channel_id} (“{channel.open_title}”) was taken over by its creator {creator_id} from "
                    f"user {old}. Payouts {list(held) or 'none'} were moved to review: decide who is owed.",
                    key=f"takeover:{channel_id}:{int(now.timestamp())}")
    logger.warning("channel %s taken over by creator %s from user %s; payouts %s to review", channel_id,
                   creator_id, old, list(held))
    return old


def owned_channel(session: Session, channel_id: int, user_id: int, *, lock: bool = False) -> Channel:
    """The channel if this user owns it; NotFound otherwise (no hint whether it exists)."""
    query = select(Channel).where(Channel.id == channel_id, Channel.owner_user_id == user_id)
    if lock:
        query = query.with_for_update()
    channel = session.scalars(query).one_or_none()
    if channel is None:
        raise NotFound("I can't find that channel among yours.")
    return channel


def owner_channels(session: Session, user_id: int) -> list[Channel]:
    return list(session.scalars(
        select(Channel).where(Channel.owner_user_id == user_id).order_by(Channel.id)))


def touch_owner(session: Session, user_id: int, now: datetime) -> None:
    """The owner talks to us again: their messages can be delivered (clears the blocked mark)."""
    session.execute(update(Channel).where(Channel.owner_user_id == user_id, Channel.owner_blocked_bot)
                    .values(owner_blocked_bot=False, updated_at=now))
