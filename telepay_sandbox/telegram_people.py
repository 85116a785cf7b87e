"""People in the sandbox: a `Person` does what a Telegram client lets its user do.

Every action takes the world lock, changes the world the way Telegram would, and queues the
updates the bot would receive. Methods block (waits, locks), so tests running their own event
loop call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from telepay_sandbox import telegram_members as members
from telepay_sandbox import telegram_payments as payments
from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_handles import CallbackQuery, ChatHandle, MessageHandle, UserHandle
from telepay_sandbox.telegram_state import (
    CallbackQueryRecord, ChatType, MemberRecord, MemberStatus, MessageRecord, World,
)
from telepay_sandbox.telegram_text import detect_entities, utf16_len

logger = logging.getLogger(__name__)

_START_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Person(UserHandle):
    """A Telegram user: talks to the bot, presses buttons, joins and leaves chats."""

    def __init__(self, world: World, user_id: int) -> None:
        super().__init__(world, user_id)
        self._read_up_to = 0  # wait_for_message's cursor in the private chat

    @property
    def _user(self):
        return self._world.users[self.id]

    def send(self, text: str) -> MessageHandle:
        """Write to the bot in private; the bot gets a `message` update."""
        world = self._world
        if not text.strip() or utf16_len(text) > 4096:
            raise ValueError("a Telegram client sends 1-4096 characters")
        with world.lock:
            person = self._user
            if person.blocked_bot:
                raise RuntimeError(f"{person.first_name} blocked the bot; unblock_bot() first")
            person.started_bot = True
            where = world.private_chat(person)
            message = world.add_message(where, text, person.id, entities=detect_entities(text))
            world.updates.push("message", render.message(world, message))
            world.notify()
            return MessageHandle(world, where.id, message.message_id)

    def command(self, name: str, payload: str | None = None) -> MessageHandle:
        return self.send(f"/{name.lstrip('/')}" + (f" {payload}" if payload else ""))

    def open_deep_link(self, url: str) -> MessageHandle:
        """Open t.me/<bot>?start=XYZ: the client sends "/start XYZ" to the bot."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        bot = query.get("domain", [""])[0] if parts.scheme == "tg" else parts.path.strip("/")
        if bot.lower() != (self._world.bot.username or "").lower():
            raise ValueError(f"{url} does not open this bot (@{self._world.bot.username})")
        payload = query.get("start", [None])[0]
        if payload is not None and not _START_PAYLOAD.fullmatch(payload):
            # Telegram clients drop a malformed start parameter and send a bare /start.
            logger.warning("deep link start parameter %r is invalid; sending /start", payload)
            payload = None
        return self.command("start", payload)

    def press(self, message: MessageHandle, *, text: str | None = None, callback_data: str | None = None):
        """Press an inline button, found by its text or its callback_data.

        A callback button sends a `callback_query` update and returns a `CallbackQuery`; URL,
        Web App and login buttons are handled by the client: their URL is returned.
        """
        world = self._world
        with world.lock:
            record = world.chats[message.chat_id].messages[message.message_id]
            if record.deleted:
                raise LookupError(f"{message!r} was deleted")
            buttons = MessageHandle(world, message.chat_id, message.message_id).buttons
            button = next((b for b in buttons if (text is None or b["text"] == text)
                           and (callback_data is None or b.get("callback_data") == callback_data)), None)
            if button is None:
                raise LookupError(f"no such button on {message!r}; buttons: {buttons}")
            if "callback_data" not in button:
                for kind in ("url", "web_app", "login_url"):
                    if kind in button:
                        return button[kind] if kind == "url" else button[kind]["url"]
                raise NotImplementedError(f"pressing {button} is not emulated")
            query_id = world.new_callback_query_id()
            world.updates.push("callback_query", _callback_query(world, query_id, self.id, record, button))
            world.notify()
            return CallbackQuery(world, query_id)

    def press_forged(self, message: MessageHandle, callback_data: str):
        """A modified client's press: a `callback_query` on `message` carrying `callback_data`
        that none of its buttons has (what a hostile user sends to probe the bot)."""
        if not 1 <= len(callback_data.encode("utf-8")) <= 64:
            raise ValueError("callback_data is 1-64 bytes")
        world = self._world
        with world.lock:
            record = world.chats[message.chat_id].messages[message.message_id]
            query_id = world.new_callback_query_id()
            button = {"text": "forged", "callback_data": callback_data}
            world.updates.push("callback_query", _callback_query(world, query_id, self.id, record, button))
            world.notify()
            return CallbackQuery(world, query_id)

    def pay(self, invoice, timeout: float = payments.PRE_CHECKOUT_TIMEOUT) -> payments.PaymentOutcome:
        """Pay an invoice in Stars: a message from sendInvoice or a link from createInvoiceLink.

        Blocks until the bot answers the pre-checkout query (or `timeout` passes)."""
        return payments.pay(self._world, self.id, invoice, timeout)

    @property
    def stars(self) -> int:
        """This person's Telegram Stars."""
        with self._world.lock:
            return self._world.stars.balances.get(self.id, 0)

    @stars.setter
    def stars(self, amount: int) -> None:
        with self._world.lock:
            self._world.stars.balances[self.id] = amount

    def join(self, target) -> str:
        """Open an invite link (or a public chat's page) and join: "joined", "requested" or
        "already_member"; raises `JoinRefused` (revoked, expired, limit_reached, banned, ...)."""
        with self._world.lock:
            if isinstance(target, ChatHandle):
                return members.join_public(self._world, self._user, target._record())
            return members.join_by_link(self._world, self._user, target)

    def leave(self, chat: ChatHandle) -> None:
        with self._world.lock:
            members.leave(self._world, self._user, chat._record())

    def block_bot(self) -> None:
        self._set_blocked(True)

    def unblock_bot(self) -> None:
        self._set_blocked(False)

    def _set_blocked(self, blocked: bool) -> None:
        world = self._world
        with world.lock:
            self._user.blocked_bot = blocked
            status = MemberStatus.KICKED if blocked else MemberStatus.MEMBER
            # The bot hears about it as its own membership changing in the private chat.
            members.set_member(world, world.private_chat(self._user), world.bot.id,
                               MemberRecord(status), actor_id=self.id)

    def forward_to_bot(self, message: MessageHandle) -> MessageHandle:
        """Forward a message (typically a channel post) into the private chat with the bot."""
        world = self._world
        with world.lock:
            source = world.chats[message.chat_id].messages[message.message_id]
            origin_chat = world.chats[source.chat_id]
            if origin_chat.type == ChatType.CHANNEL:
                origin = {"type": "channel", "date": source.date, "chat": render.chat(world, origin_chat),
                          "message_id": source.message_id}
            else:
                origin = {"type": "user", "date": source.date,
                          "sender_user": render.user(world.users[source.sender_id])}
            person = self._user
            person.started_bot = True
            where = world.private_chat(person)
            forwarded = world.add_message(where, source.text, person.id, entities=list(source.entities),
                                          forward_origin=origin)
            world.updates.push("message", render.message(world, forwarded))
            world.notify()
            return MessageHandle(world, where.id, forwarded.message_id)

    def messages(self) -> list[MessageHandle]:
        """Messages the bot sent this person that are still there, oldest first."""
        with self._world.lock:
            where = self._world.private_chat(self._user)
            return [MessageHandle(self._world, where.id, m.message_id) for m in where.messages.values()
                    if m.sender_id == self._world.bot.id and not m.deleted]

    def wait_for_message(self, predicate: Callable[[MessageHandle], bool] | None = None,
                         timeout: float = 5.0) -> MessageHandle:
        """The first message from the bot, after the last one this returned, that matches."""
        world = self._world
        deadline = time.monotonic() + timeout
        with world.changed:
            where = world.private_chat(self._user)
            while True:
                for record in list(where.messages.values()):
                    if record.message_id <= self._read_up_to or record.sender_id != world.bot.id:
                        continue
                    handle = MessageHandle(world, where.id, record.message_id)
                    if predicate is None or predicate(handle):
                        self._read_up_to = record.message_id
                        return handle
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    sent = [m.text for m in where.messages.values() if m.sender_id == world.bot.id]
                    raise TimeoutError(
                        f"no matching message for {self.first_name} in {timeout} s; bot sent {sent}")
                world.changed.wait(remaining)

    def status_in(self, chat: ChatHandle) -> str:
        with self._world.lock:
            return self._world.member(chat._record(), self.id).status.value


def _callback_query(world: World, query_id: str, user_id: int, record: MessageRecord, button: dict) -> dict:
    where = world.chats[record.chat_id]
    world.callback_queries[query_id] = CallbackQueryRecord(
        query_id, user_id, record.chat_id, record.message_id, button["callback_data"])
    return {
        "id": query_id, "from": render.user(world.users[user_id]),
        "message": render.message(world, record), "chat_instance": where.chat_instance,
        "data": button["callback_data"],
    }
