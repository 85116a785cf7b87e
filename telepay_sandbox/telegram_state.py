"""The Telegram sandbox's world: users, chats, members, invite links, messages, callback queries.

Plain records plus one `World` that owns them, allocates their ids and answers lookups. Every
reader and writer holds `World.lock`; `World.changed` is notified after each change so that
long polls and test helpers waiting for something can wake up. Nothing here renders Bot API
JSON (see `telegram_render`) or knows about HTTP (see `telegram_api`).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from telepay.clock import Clock, SystemClock
from telepay_sandbox.telegram_ratelimit import RateLimiter, RateLimits
from telepay_sandbox.telegram_stars import StarsLedger
from telepay_sandbox.telegram_updates import UpdateQueue


class ChatType(StrEnum):
    PRIVATE = "private"
    GROUP = "group"
    SUPERGROUP = "supergroup"
    CHANNEL = "channel"


class MemberStatus(StrEnum):
    CREATOR = "creator"
    ADMINISTRATOR = "administrator"
    MEMBER = "member"
    RESTRICTED = "restricted"
    LEFT = "left"
    KICKED = "kicked"


# ChatMemberAdministrator's boolean rights; the last four exist only in the chat types named.
ADMIN_RIGHTS = (
    "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
    "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
    "can_edit_stories", "can_delete_stories",
)
CHANNEL_ONLY_RIGHTS = ("can_post_messages", "can_edit_messages")
SUPERGROUP_ONLY_RIGHTS = ("can_pin_messages", "can_manage_topics")
# ChatMemberRestricted's permission flags (all required by the reference).
MEMBER_PERMISSIONS = (
    "can_send_messages", "can_send_audios", "can_send_documents", "can_send_photos",
    "can_send_videos", "can_send_video_notes", "can_send_voice_notes", "can_send_polls",
    "can_send_other_messages", "can_add_web_page_previews", "can_react_to_messages",
    "can_edit_tag", "can_change_info", "can_invite_users", "can_pin_messages",
    "can_manage_topics",
)
# Telegram treats restrictions shorter than 30 s or longer than 366 days as permanent.
MIN_RESTRICTION_SECONDS = 30
MAX_RESTRICTION_SECONDS = 366 * 24 * 3600


@dataclass
class UserRecord:
    id: int
    first_name: str
    is_bot: bool = False
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    started_bot: bool = False  # the user opened a private chat with the bot at least once
    blocked_bot: bool = False


@dataclass
class MemberRecord:
    status: MemberStatus
    rights: dict[str, bool] = field(default_factory=dict)  # admin rights or member permissions
    until_date: int = 0  # kicked/restricted: 0 means forever
    is_member: bool = True  # restricted only: still in the chat
    invite_link: str | None = None  # the link the user joined by, for member_limit
    promoted_by_bot: bool = False  # decides ChatMemberAdministrator.can_be_edited


@dataclass
class InviteLinkRecord:
    url: str
    creator_id: int
    name: str | None = None
    expire_date: int | None = None
    member_limit: int | None = None
    creates_join_request: bool = False
    is_primary: bool = False
    is_revoked: bool = False
    uses: int = 0  # people who joined by it, ever (the Bot API does not show this)


@dataclass
class JoinRequestRecord:
    user_id: int
    date: int
    invite_link: str | None


@dataclass
class MessageRecord:
    message_id: int
    chat_id: int
    date: int
    text: str
    sender_id: int | None  # None for posts signed by the channel itself
    entities: list[dict] = field(default_factory=list)
    reply_markup: dict | None = None
    edit_date: int | None = None
    deleted: bool = False
    forward_origin: dict | None = None
    reply_to_message_id: int | None = None
    # Fields of a non-text message (invoice, successful_payment, refunded_payment), as rendered.
    service: dict | None = None


@dataclass
class ChatRecord:
    id: int
    type: ChatType
    title: str | None = None
    username: str | None = None
    description: str | None = None
    members: dict[int, MemberRecord] = field(default_factory=dict)
    messages: dict[int, MessageRecord] = field(default_factory=dict)
    invite_links: dict[str, InviteLinkRecord] = field(default_factory=dict)
    join_requests: dict[int, JoinRequestRecord] = field(default_factory=dict)
    next_message_id: int = 1

    @property
    def chat_instance(self) -> str:
        # Telegram's chat_instance is an opaque per-chat string; derive a stable one.
        return str((self.id * 6364136223846793005 + 1442695040888963407) % 2**63)


@dataclass
class CallbackQueryRecord:
    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    answer: dict | None = None


class World:
    """All emulator state behind one lock; the sandbox facade and the Bot API share it."""

    def __init__(
        self,
        *,
        bot_id: int,
        bot_username: str,
        bot_first_name: str,
        clock: Clock | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.clock = clock or SystemClock()
        self.users: dict[int, UserRecord] = {}
        self.chats: dict[int, ChatRecord] = {}
        self.callback_queries: dict[str, CallbackQueryRecord] = {}
        self.commands: dict[str, list[dict]] = {}
        self.updates = UpdateQueue(self.changed)
        self.limiter = RateLimiter(rate_limits)
        self.stars = StarsLedger()
        self.stopping = False
        # Ids look like Telegram's: users are positive, channels and supergroups -100xxxxxxxxxx.
        self._user_ids = itertools.count(5_000_000_001)
        self._chat_ids = itertools.count(2_000_000_001)
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self.bot = UserRecord(bot_id, bot_first_name, is_bot=True, username=bot_username)
        self.users[bot_id] = self.bot

    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def add_user(self, first_name: str, **fields) -> UserRecord:
        user_id = next(self._user_ids)
        while user_id in self.users:  # never collide with the bot's id (from its token)
            user_id = next(self._user_ids)
        user = UserRecord(user_id, first_name, **fields)
        self.users[user.id] = user
        return user

    def add_chat(self, chat_type: ChatType, title: str, username: str | None) -> ChatRecord:
        if username and self.chat_by_username(username):
            raise ValueError(f"username @{username} is taken")
        chat_id = -(10**12 + next(self._chat_ids))
        chat = ChatRecord(chat_id, chat_type, title=title, username=username)
        self.chats[chat_id] = chat
        return chat

    def new_callback_query_id(self) -> str:
        return str(next(self._query_ids))

    def private_chat(self, user: UserRecord) -> ChatRecord:
        """The chat between `user` and the bot (its id is the user's id, as in Telegram)."""
        chat = self.chats.get(user.id)
        if chat is None:
            chat = ChatRecord(user.id, ChatType.PRIVATE)
            self.chats[user.id] = chat
        return chat

    def chat_by_username(self, username: str) -> ChatRecord | None:
        wanted = username.lstrip("@").lower()
        for chat in self.chats.values():
            if chat.username and chat.username.lower() == wanted:
                return chat
        return None

    def find_chat(self, chat_id: int | str) -> ChatRecord | None:
        """A chat by id, or a public supergroup/channel by "@username", as the Bot API resolves it."""
        if isinstance(chat_id, int):
            return self.chats.get(chat_id)
        if chat_id.startswith("@"):
            chat = self.chat_by_username(chat_id)
            # Bots cannot address users by username; only public groups and channels.
            return chat if chat and chat.type != ChatType.PRIVATE else None
        return None

    def member(self, chat: ChatRecord, user_id: int) -> MemberRecord:
        """The user's effective membership, lifting bans and restrictions whose time is up."""
        record = chat.members.get(user_id)
        if record is None:
            return MemberRecord(MemberStatus.LEFT)
        timed = record.status in (MemberStatus.KICKED, MemberStatus.RESTRICTED)
        if timed and record.until_date and record.until_date <= self.now():
            lifted = record.status == MemberStatus.RESTRICTED and record.is_member
            record = MemberRecord(MemberStatus.MEMBER if lifted else MemberStatus.LEFT)
            chat.members[user_id] = record
        return record

    def is_in_chat(self, chat: ChatRecord, user_id: int) -> bool:
        member = self.member(chat, user_id)
        if member.status == MemberStatus.RESTRICTED:
            return member.is_member
        return member.status in (
            MemberStatus.CREATOR, MemberStatus.ADMINISTRATOR, MemberStatus.MEMBER
        )

    def has_right(self, chat: ChatRecord, user_id: int, right: str) -> bool:
        member = self.member(chat, user_id)
        if member.status == MemberStatus.CREATOR:
            return True
        return member.status == MemberStatus.ADMINISTRATOR and member.rights.get(right, False)

    def restriction_until(self, until_date: int | None) -> int:
        """Telegram's rule: an until_date under 30 s or over 366 days away means forever (0)."""
        if not until_date:
            return 0
        remaining = until_date - self.now()
        if remaining < MIN_RESTRICTION_SECONDS or remaining > MAX_RESTRICTION_SECONDS:
            return 0
        return until_date

    def add_message(self, chat: ChatRecord, text: str, sender_id: int | None, **fields) -> MessageRecord:
        message = MessageRecord(chat.next_message_id, chat.id, self.now(), text, sender_id, **fields)
        chat.messages[message.message_id] = message
        chat.next_message_id += 1
        return message
