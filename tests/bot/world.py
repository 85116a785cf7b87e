"""A running `telepay` process wired to the sandbox Telegram and NOWPayments, and the moves
people make with the bot (register a pair, fill in the form), for the bot's end-to-end tests.

Waiting is always for a condition (a message, an edit, a row), polled briefly, never a sleep.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.database import empty_tables
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import ChatHandle, MessageHandle, Person, RateLimits, TelegramSandbox
from telepay_sandbox.waiting import until

TOKEN = "222:bot-e2e-token"
BOT = "TelePayBotE2E"
TIMEOUT = 20.0
GOOD_TRX = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"


class World:
    def __init__(self, database_url: str, tmp: Path):
        self.telegram = TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()).start()
        self.nowpayments = NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret").start()
        self.changenow = ChangeNowSandbox("sandbox-changenow-key", chain=None).start()
        env = sandbox_env(telegram_base_url=self.telegram.base_url, token=TOKEN, bot_username=BOT,
                          data_dir=tmp, database_url=database_url,
                          nowpayments_base_url=self.nowpayments.base_url,
                          changenow_base_url=self.changenow.base_url)
        self.process = TelepayProcess(env, tmp / "telepay.log")
        self.engine = create_engine(database_url)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.process.start()

    def close(self) -> None:
        try:
            self.process.kill()
        finally:
            self.telegram.stop()
            self.nowpayments.stop()
            self.changenow.stop()
            empty_tables(self.engine)
            self.engine.dispose()

    def restart(self) -> None:
        code, _ = self.process.stop()
        assert code == 0, self.process.log()
        self.process.start()

    # ---- people and their moves ---------------------------------------------------------------

    def owner_with_pair(self, name: str) -> tuple[Person, ChatHandle, ChatHandle]:
        """An owner with a public and a private channel where the bot is an admin."""
        owner = self.telegram.create_user(name, username=name.lower())
        open_chat = self.telegram.create_channel(f"{name} News", username=f"{name.lower()}_news", creator=owner)
        closed_chat = self.telegram.create_channel(f"{name} VIP", creator=owner)
        self.telegram.add_admin(open_chat, self.telegram.bot)
        self.telegram.add_admin(closed_chat, self.telegram.bot)
        return owner, open_chat, closed_chat

    def menu(self, person: Person) -> MessageHandle:
        person.send("/start")
        return person.wait_for_message(lambda m: "Welcome" in m.text, timeout=TIMEOUT)

    def press(self, person: Person, message: MessageHandle, label: str, *, expect: str | None = None,
              new_message: bool = False) -> MessageHandle:
        """Press a button and wait until the pressed message (or a new one) contains `expect`."""
        before = message.text
        query = person.press(message, text=label)
        query.wait_for_answer(timeout=TIMEOUT)
        if new_message:
            return person.wait_for_message(lambda m: expect is None or expect in m.text, timeout=TIMEOUT)
        until(lambda: (expect in message.text) if expect else message.text != before, what=f"edit after {label}")
        return message

    def button_labels(self, message: MessageHandle) -> list[str]:
        return [button["text"] for button in message.buttons]

    def button(self, message: MessageHandle, starts: str) -> str:
        return next(label for label in self.button_labels(message) if label.startswith(starts))

    def register(self, owner: Person, open_chat: ChatHandle, closed_chat: ChatHandle) -> MessageHandle:
        """Add channels → @username of the open one → a forwarded post of the closed one; the form."""
        menu = self.menu(owner)
        self.press(owner, menu, "➕ Add channels", expect="send me the open channel")
        owner.send("@" + open_chat.username)
        owner.wait_for_message(lambda m: "Open channel" in m.text, timeout=TIMEOUT)
        owner.forward_to_bot(closed_chat.post("Welcome, members!"))
        owner.wait_for_message(lambda m: "Registered" in m.text, timeout=TIMEOUT)
        return owner.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=TIMEOUT)

    def answer(self, owner: Person, form: MessageHandle, path: list[str], reply: str) -> MessageHandle:
        """Press through `path` in the form, type `reply`, and return the form sent anew."""
        message = form
        for label in path:
            message = self.press(owner, message, self.button(message, label))
        owner.send(reply)
        return owner.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=TIMEOUT)

    def set_up(self, owner: Person, form: MessageHandle, *, price: str = "5", days: str = "30",
               address: str = GOOD_TRX) -> MessageHandle:
        """Tier 1, USDT on TRON and an address, saved with the address confirmed."""
        form = self.answer(owner, form, ["Tier 1", "Price"], price)
        form = self.answer(owner, form, ["Tier 1", "Duration"], days)
        self.press(owner, form, "💱 Currency", expect="Which currency")
        self.press(owner, form, "Tether USDT (TRC-20)", expect="Tether USDT (TRC-20)")
        form = self.answer(owner, form, ["👛 Address"], address)
        self.press(owner, form, "💾 Save all changes", expect="Please confirm your new payout address")
        self.press(owner, form, "✅ Yes, save all changes", expect="All changes saved")
        return form

    def bot_posts(self, chat: ChatHandle) -> list[MessageHandle]:
        return [m for m in chat.messages() if m.from_bot]
