"""Live handles on the sandbox's world for tests: users, chats, messages, callback queries.

A handle keeps only ids; every property reads the current state under the world lock, so a
message handle shows the text and keyboard the bot last edited it to.
"""

from __future__ import annotations

import copy
import time

from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_state import ChatRecord, ChatType, MemberStatus, MessageRecord, World
from telepay_sandbox.telegram_text import detect_entities


class MessageHandle:
    """A message in some chat; properties show its current text, keyboard and state."""

    def __init__(self, world: World, chat_id: int, message_id: int) -> None:
        self._world = world
        self.chat_id = chat_id
        self.message_id = message_id

    def _record(self) -> MessageRecord:
        return self._world.chats[self.chat_id].messages[self.message_id]

    def _read(self, field: str):
        with self._world.lock:
            # A copy, so a test cannot change the world by editing what it read.
            return copy.deepcopy(getattr(self._record(), field))

    text = property(lambda self: self._read("text"))
    entities = property(lambda self: self._read("entities"))
    reply_markup = property(lambda self: self._read("reply_markup"))
    sender_id = property(lambda self: self._read("sender_id"))
    date = property(lambda self: self._read("date"))
    edit_date = property(lambda self: self._read("edit_date"))
    deleted = property(lambda self: self._read("deleted"))
    forward_origin = property(lambda self: self._read("forward_origin"))

    @property
    def from_bot(self) -> bool:
        return self.sender_id == self._world.bot.id

    @property
    def buttons(self) -> list[dict]:
        """The inline keyboard's buttons, row by row, flattened."""
        markup = self.reply_markup or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]

    def as_dict(self) -> dict:
        """The message as the Bot API renders it."""
        with self._world.lock:
            return render.message(self._world, self._record())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MessageHandle) and (other.chat_id, other.message_id) == (
            self.chat_id, self.message_id)

    def __hash__(self) -> int:
        return hash((self.chat_id, self.message_id))

    def __repr__(self) -> str:
        with self._world.lock:
            record = self._record()
            state = " deleted" if record.deleted else ""
            return f"<Message {self.chat_id}/{self.message_id} {record.text!r}{state}>"


class ChatHandle:
    """A channel, supergroup or private chat; `post` writes in it as one of its people."""

    def __init__(self, world: World, chat_id: int) -> None:
        self._world = world
        self.id = chat_id

    def _record(self) -> ChatRecord:
        return self._world.chats[self.id]

    @property
    def type(self) -> ChatType:
        return self._record().type

    @property
    def title(self) -> str | None:
        return self._record().title

    @property
    def username(self) -> str | None:
        return self._record().username

    @property
    def owner(self) -> UserHandle:
        with self._world.lock:
            members = self._record().members.items()
            owner_id = next(uid for uid, m in members if m.status == MemberStatus.CREATOR)
            return UserHandle(self._world, owner_id)

    def messages(self) -> list[MessageHandle]:
        """Messages in the chat that are not deleted, oldest first."""
        with self._world.lock:
            return [MessageHandle(self._world, self.id, m.message_id)
                    for m in self._record().messages.values() if not m.deleted]

    def post(self, text: str, author: UserHandle | None = None,
             reply_markup: dict | None = None) -> MessageHandle:
        """Someone (by default the owner) posts in the channel or writes in the group."""
        world = self._world
        with world.lock:
            where = self._record()
            author_id = (author or self.owner).id
            message = world.add_message(where, text, author_id, entities=detect_entities(text),
                                        reply_markup=reply_markup)
            if world.is_in_chat(where, world.bot.id):
                kind = "channel_post" if where.type == ChatType.CHANNEL else "message"
                world.updates.push(kind, render.message(world, message))
            world.notify()
            return MessageHandle(world, self.id, message.message_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Chat {self.id} {self.title or ''}>"


class UserHandle:
    """A user (or the bot) by id; `Person` adds what a user can do."""

    def __init__(self, world: World, user_id: int) -> None:
        self._world = world
        self.id = user_id

    @property
    def first_name(self) -> str:
        return self._world.users[self.id].first_name

    @property
    def username(self) -> str | None:
        return self._world.users[self.id].username

    def as_dict(self) -> dict:
        with self._world.lock:
            return render.user(self._world.users[self.id])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.first_name}>"


class CallbackQuery:
    """A button press; `answer` is what the bot answered (None until it does)."""

    def __init__(self, world: World, query_id: str) -> None:
        self._world = world
        self.id = query_id

    @property
    def answer(self) -> dict | None:
        with self._world.lock:
            return self._world.callback_queries[self.id].answer

    def wait_for_answer(self, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._world.changed:
            while self.answer is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"callback query {self.id} was not answered in {timeout} s")
                self._world.changed.wait(remaining)
            return self.answer
