"""A loopback emulator of Telegram's Bot API, for tests, the demo and benchmarks.

`TelegramSandbox` runs the HTTP server a python-telegram-bot `Application` talks to
(`ApplicationBuilder().token(sandbox.token).base_url(sandbox.base_url)`) and gives tests the
other side: people who write to the bot, press its buttons and join its channels, the world's
set-up (channels, admins, members), and what the bot did (`calls`, messages, invite links).

    with TelegramSandbox() as sandbox:
        alice = sandbox.create_user("Alice")
        alice.command("start")
        reply = alice.wait_for_message()

Rate limits are on by default with Telegram-like numbers; pass `rate_limits=RateLimits.off()`
or tighter ones. All methods are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from telepay.clock import Clock
from telepay_sandbox import telegram_payments as payments
from telepay_sandbox.harness import note_token
from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_handles import CallbackQuery, ChatHandle, MessageHandle, UserHandle
from telepay_sandbox.telegram_members import JoinRefused, find_link, set_member
from telepay_sandbox.loopback import LoopbackServer
from telepay_sandbox.telegram_params import ApiError
from telepay_sandbox.telegram_payments import PaymentOutcome
from telepay_sandbox.telegram_people import Person
from telepay_sandbox.telegram_ratelimit import RateLimits
from telepay_sandbox.telegram_api import BotApi, Call
from telepay_sandbox.telegram_state import (
    ADMIN_RIGHTS, CHANNEL_ONLY_RIGHTS, MEMBER_PERMISSIONS, SUPERGROUP_ONLY_RIGHTS, ChatType,
    MemberRecord, MemberStatus, World,
)

__all__ = [
    "Call", "CallbackQuery", "ChatHandle", "JoinRefused", "MessageHandle", "PaymentOutcome", "Person",
    "RateLimits", "TelegramSandbox", "UserHandle",
]

DEFAULT_TOKEN = "7000000001:AAE-sandbox-token-0123456789abcdefghij"


class TelegramSandbox:
    """The emulator and its test-side controls.

    The bot's id is the number before ":" in `token`, as on Telegram. `rate_limits=None` (or
    `RateLimits.off()`) disables flood limits. `clock` (a `telepay.clock.Clock`) dates messages
    and decides when invite links expire and bans end; share a `ManualClock` with the code
    under test to move time forward.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "telepay_sandbox_bot",
        *,
        bot_first_name: str = "TelePay",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: RateLimits | None = RateLimits(),
        clock: Clock | None = None,
    ) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("a bot token looks like '<bot id>:<secret>'")
        self.token = token
        note_token(token)  # a test session checks its logs for it
        self._world = World(bot_id=int(bot_id), bot_username=bot_username,
                            bot_first_name=bot_first_name, clock=clock, rate_limits=rate_limits)
        self._api = BotApi(self._world, token)
        self._server = LoopbackServer(self._api, "telegram", host, port)
        self.bot = UserHandle(self._world, int(bot_id))
        self._renewals: threading.Thread | None = None
        self._renewals_wake = threading.Event()  # set by stop(): no waiting out the renewals' pause

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TelegramSandbox:
        self._world.stopping = False
        self._renewals_wake.clear()
        self._server.start()
        # Star subscriptions renew when their period ends on the clock, whoever moves it.
        self._renewals = threading.Thread(target=self._renew_forever, name="telegram-sandbox-stars",
                                          daemon=True)
        self._renewals.start()
        return self

    def stop(self) -> None:
        with self._world.lock:
            self._world.stopping = True  # ends long polls at once
            self._world.notify()
        self._renewals_wake.set()
        self._server.stop()
        if self._renewals is not None:
            self._renewals.join(timeout=5)
            self._renewals = None

    def _renew_forever(self) -> None:
        while not self._world.stopping:
            self.charge_due_subscriptions()
            self._renewals_wake.wait(0.2)

    def __enter__(self) -> TelegramSandbox:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"{self._server.origin}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self._server.origin}/file/bot"

    def now(self) -> int:
        return self._world.now()

    # ---- setting the world up ----------------------------------------------------------------

    def create_user(self, first_name: str, username: str | None = None, *,
                    last_name: str | None = None, language_code: str = "en") -> Person:
        with self._world.lock:
            user = self._world.add_user(first_name, username=username, last_name=last_name,
                                        language_code=language_code)
            return Person(self._world, user.id)

    def create_channel(self, title: str, username: str | None = None,
                       creator: UserHandle | None = None) -> ChatHandle:
        return self._create_chat(ChatType.CHANNEL, title, username, creator)

    def create_supergroup(self, title: str, username: str | None = None,
                          creator: UserHandle | None = None) -> ChatHandle:
        return self._create_chat(ChatType.SUPERGROUP, title, username, creator)

    def _create_chat(self, chat_type: ChatType, title: str, username: str | None,
                     creator: UserHandle | None) -> ChatHandle:
        with self._world.lock:
            if creator is None:
                creator = self.create_user(f"{title} owner")
            where = self._world.add_chat(chat_type, title, username)
            where.members[creator.id] = MemberRecord(MemberStatus.CREATOR)
            return ChatHandle(self._world, where.id)

    def add_admin(self, chat: ChatHandle, who: UserHandle, **rights: bool) -> None:
        """Promote someone (or `sandbox.bot`); rights default to what Telegram's apps grant."""
        self.set_member_status(chat, who, MemberStatus.ADMINISTRATOR, **rights)

    def set_member_status(self, chat: ChatHandle, who: UserHandle, status: str, *,
                          until_date: int = 0, is_member: bool = True, **rights: bool) -> None:
        """Put someone in a state directly, as the chat's owner would (updates included)."""
        status = MemberStatus(status)
        world = self._world
        with world.lock:
            where = world.chats[chat.id]
            known = _rights_for(where.type, status)
            unknown = set(rights) - set(known)
            if unknown:
                raise ValueError(f"not a {status.value} right here: {sorted(unknown)}")
            if status == MemberStatus.CREATOR:
                raise ValueError("the creator is chosen when the chat is created")
            record = MemberRecord(status, rights={**known, **rights}, is_member=is_member,
                                  until_date=world.restriction_until(until_date))
            set_member(world, where, who.id, record, actor_id=chat.owner.id)

    def member_status(self, chat: ChatHandle, who: UserHandle) -> str:
        with self._world.lock:
            return self._world.member(self._world.chats[chat.id], who.id).status.value

    # ---- Telegram Stars ----------------------------------------------------------------------

    def charge_due_subscriptions(self) -> int:
        """Renew the Star subscriptions whose period has ended now; how many were charged.
        (A background thread does this every 0.2 s; tests may call it to be sure.)"""
        with self._world.lock:
            return payments.charge_due(self._world)

    def force_payment(self, person: UserHandle, payload: str, amount: int) -> str:
        """Deliver a `successful_payment` the bot never pre-approved; its charge id."""
        with self._world.lock:
            return payments.force_charge(self._world, person.id, payload, amount)

    def redeliver(self, update: dict) -> None:
        """Queue an update again, as Telegram does when the bot's offset never confirmed it."""
        with self._world.lock:
            kind = next(key for key in update if key != "update_id")
            self._world.updates.push(kind, update[kind])

    @property
    def bot_star_balance(self) -> int:
        with self._world.lock:
            return self._world.stars.bot_balance

    def star_subscription(self, person: UserHandle, charge_id: str) -> dict:
        """A person's Star subscription as Telegram keeps it: expiry, cancelled, lapsed, charges."""
        with self._world.lock:
            found = self._world.stars.subscription_of(person.id, charge_id)
            if found is None:
                raise LookupError(f"{charge_id} is not a subscription payment of {person!r}")
            return {"expires_at": found.expires_at, "canceled": found.canceled_by_bot,
                    "lapsed": found.lapsed, "charge_ids": list(found.charge_ids)}

    # ---- what the bot did --------------------------------------------------------------------

    def chat_messages(self, chat: ChatHandle) -> list[MessageHandle]:
        return chat.messages()

    def invite_links(self, chat: ChatHandle) -> list[dict]:
        """The chat's invite links as the bot sees them (ChatInviteLink objects)."""
        with self._world.lock:
            where = self._world.chats[chat.id]
            return [render.invite_link(self._world, where, link) for link in where.invite_links.values()]

    def invite_link_uses(self, url: str) -> int:
        """How many people ever joined by this link (approved requests included)."""
        with self._world.lock:
            found = find_link(self._world, url)
            if found is None:
                raise LookupError(f"no invite link {url}")
            return found[1].uses

    def pending_join_requests(self, chat: ChatHandle) -> list[int]:
        with self._world.lock:
            return list(self._world.chats[chat.id].join_requests)

    @property
    def calls(self) -> list[Call]:
        with self._world.lock:
            return list(self._api.calls)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def mark(self) -> int:
        """A position in `calls`, to wait only for calls made after it."""
        with self._world.lock:
            return len(self._api.calls)

    def wait_for_call(self, method: str, predicate: Callable[[Call], bool] | None = None,
                      timeout: float = 5.0, *, after: int = 0) -> Call:
        """The first call to `method` (from position `after`) matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self._world.changed:
            while True:
                for call in self._api.calls[after:]:
                    if call.method.lower() == method.lower() and (predicate is None or predicate(call)):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [call.method for call in self._api.calls[after:]]
                    raise TimeoutError(f"no matching {method} call in {timeout} s; calls: {seen}")
                self._world.changed.wait(remaining)

    @property
    def errors(self) -> list[str]:
        """Internal sandbox failures (answered 500); a test should see none."""
        with self._world.lock:
            return list(self._api.errors)

    @property
    def updates(self) -> list[dict]:
        """Every update queued for the bot, in order."""
        with self._world.lock:
            return [dict(update) for update in self._world.updates.history]

    @property
    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._world.lock:
            return self._world.updates.pending

    @property
    def allowed_updates(self) -> frozenset[str] | None:
        return self._world.updates.allowed_updates

    @allowed_updates.setter
    def allowed_updates(self, kinds) -> None:
        """As if the bot had passed `allowed_updates` (Telegram remembers it across restarts)."""
        with self._world.lock:
            self._world.updates.allowed_updates = frozenset(kinds) if kinds else None

    # ---- shaping the answers -----------------------------------------------------------------

    def set_rate_limits(self, limits: RateLimits | None) -> None:
        self._world.limiter.configure(limits)

    def fail_next(self, method: str, error_code: int, description: str,
                  retry_after: int | None = None, count: int = 1) -> None:
        """Answer the next `count` calls to `method` with this error instead of serving them."""
        self._api.fail_next(method, ApiError(error_code, description, retry_after), count)


def _rights_for(chat_type: ChatType, status: MemberStatus) -> dict[str, bool]:
    """The rights a status carries here, with the defaults Telegram's apps pre-select."""
    if status == MemberStatus.ADMINISTRATOR:
        extra = CHANNEL_ONLY_RIGHTS if chat_type == ChatType.CHANNEL else SUPERGROUP_ONLY_RIGHTS
        rights = {name: True for name in ADMIN_RIGHTS + extra}
        rights.update(can_promote_members=False, is_anonymous=False)
        return rights
    if status == MemberStatus.RESTRICTED:
        return {name: False for name in MEMBER_PERMISSIONS}
    return {}
