"""The demo's stage: the sandboxes, the clock they share with the process, and `telepay run`.

Everything runs on loopback: the Telegram Bot API emulator, NOWPayments, ChangeNOW and a dev
Ethereum chain, in this process; `telepay run` as a child process on the embedded PostgreSQL,
configured only through its environment, as an operator would. The process's clock, and every
sandbox's, is real time plus the seconds in one offset file (`telepay.clock.OffsetFileClock`),
so "a month later" is one write to that file, and link expiry, bans and sweeps all agree on it.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from telepay.clock import OffsetFileClock
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox, ExchangeState
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import TelegramSandbox
from telepay_sandbox.waiting import until

BOT_TOKEN = "424242:sandbox-demo-token"
BOT_USERNAME = "TelePayDemoBot"

# Short timers so the whole story, a month of it included, plays in well under a minute.
DEMO_SETTINGS = {
    "SWEEP_INTERVAL_SECONDS": "1",
    "REMINDER_OFFSETS": "3d,1d",
    "PAYOUT_POLL_SECONDS": "0.5",
    "PAYOUT_BATCH_INTERVAL_SECONDS": "5",
    "WORKER_POLL_SECONDS": "0.2",
}


class Stage:
    """Started with `with Stage(data_dir) as stage:`; the process itself by `start_process()`."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.offset_file = data_dir / "clock-offset"
        self.clock = OffsetFileClock(self.offset_file)
        self._stack = ExitStack()
        self.process: TelepayProcess | None = None

    def __enter__(self) -> Stage:
        stack = self._stack.__enter__()
        self.chain = stack.enter_context(DevChain())
        self.telegram = stack.enter_context(TelegramSandbox(token=BOT_TOKEN, bot_username=BOT_USERNAME,
                                                            clock=self.clock))
        # The operator, told of alerts and /paysupport requests (ADMIN_CHAT_IDS).
        self.operator = self.telegram.create_user("Oscar", username="oscar_ops")
        self.operator.command("start")
        self.nowpayments = stack.enter_context(NowPaymentsSandbox(
            "sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret", clock=self.clock))
        self.changenow = stack.enter_context(ChangeNowSandbox("sandbox-changenow-key", self.chain,
                                                              clock=self.clock))
        env = sandbox_env(telegram_base_url=self.telegram.base_url, token=BOT_TOKEN, bot_username=BOT_USERNAME,
                          data_dir=self.data_dir, nowpayments_base_url=self.nowpayments.base_url,
                          changenow_base_url=self.changenow.base_url, chain_env=self.chain.env(),
                          extra={**DEMO_SETTINGS, "CLOCK_OFFSET_FILE": str(self.offset_file),
                                 "ADMIN_CHAT_IDS": str(self.operator.id)})
        self.process = TelepayProcess(env, self.data_dir / "telepay.log")
        stack.callback(self.process.kill)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.__exit__(*exc_info)

    # ---- the operator ------------------------------------------------------------------------

    def telepay(self, *args: str) -> str:
        """A one-shot CLI command against the same database; its output, or an error."""
        done: subprocess.CompletedProcess = self.process.telepay(*args)
        if done.returncode != 0:
            raise RuntimeError(f"telepay {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def move_clock(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    # ---- the outside world, as the sandboxes saw it --------------------------------------------

    def exchange_for(self, payout_id: int) -> ExchangeState | None:
        """The ChangeNOW exchange the product created for a payout (it tags each with the payout)."""
        with self.changenow.lock:
            return next((e for e in self.changenow.exchanges.values()
                         if e.user_id == f"telepay-payout-{payout_id}"), None)

    def usdt(self, address: str) -> Decimal:
        return self.chain.balance_usdt(address)


def press(person, message, label: str, expect: str) -> None:
    """Press a button and wait until the pressed message says `expect`."""
    person.press(message, text=label).wait_for_answer(timeout=15)
    until(lambda: expect in message.text, f"“{expect}” after pressing {label}")
