"""Alerts on conditions, within minutes, through more than the bot.

Every ALERT_CHECK_SECONDS the monitor runs `/status`'s checks; each check that is not `ok` is
a condition (a dead job, a payout failing for PAYOUT_FAILING_ALERT_MINUTES, a payment in
review, a burst of refused IPNs, polling stopped, the host wallet low, the database
unreachable, a queue not draining, the disk filling). A new condition is sent at once, sent
again at once if it worsens (degraded -> down) and every ALERT_REPEAT_MINUTES while it holds,
and a "resolved" is sent when it ends.

Delivery goes straight out from this process, to the operators' Telegram chats (ADMIN_CHAT_IDS;
a group id works) and to ALERT_WEBHOOK_URL as a JSON POST, without passing through the
database or the job queue: "the database is unreachable" has to get out when the database is
the thing that is broken. A delivery that fails is retried at the next evaluation, and
`undelivered()` shows in `/status` until it gets through; nothing is dropped silently.
Alerts raised by the services themselves (operator.alert jobs: one-off facts such as a refund
after fulfilment) take the job queue instead, to the same chats and the same webhook
(telepay.services.messages); docs/decisions.md says why there are two paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

from telepay.ops.checks import _RANK, OK, Report
from telepay.ops.webhook import Alert, WebhookChannel

logger = logging.getLogger(__name__)


class Channel(Protocol):
    name: str

    async def send(self, alert: Alert) -> None: ...


class TelegramChannel:
    """The operators' chats through the bot (a chat that fails makes the delivery fail: retried)."""

    name = "telegram"

    def __init__(self, send_message: Callable[[int, str], Awaitable[object]], chat_ids: tuple[int, ...]):
        self.send_message = send_message
        self.chat_ids = chat_ids

    async def send(self, alert: Alert) -> None:
        failures = []
        for chat_id in self.chat_ids:
            try:
                await self.send_message(chat_id, alert.as_message())
            except Exception as error:  # noqa: BLE001 - each chat on its own; the error is the report
                failures.append(f"chat {chat_id}: {type(error).__name__}: {error}")
        if failures:
            raise RuntimeError("; ".join(failures))


@dataclass
class _State:
    alert: Alert
    last_sent: float | None = None
    pending: set[str] = field(default_factory=set)   # channels still owed the latest send
    errors: dict[str, str] = field(default_factory=dict)


class AlertMonitor:
    def __init__(self, evaluate: Callable[[], Report], channels: list[Channel], *,
                 repeat_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.evaluate = evaluate
        self.channels = channels
        self.repeat_seconds = repeat_seconds
        self.clock = clock
        self.active: dict[str, _State] = {}
        self.resolved: dict[str, _State] = {}  # "resolved" messages not yet delivered everywhere

    def undelivered(self) -> dict[str, dict[str, str]]:
        """Alert key -> channel -> last error, for every send still owed."""
        owed = {}
        for key, state in [*self.active.items(), *self.resolved.items()]:
            if state.pending:
                owed[key] = {c: state.errors.get(c, "not sent yet") for c in sorted(state.pending)}
        return owed

    async def tick(self) -> None:
        report = await asyncio.to_thread(self.evaluate)
        now = self.clock()
        firing = {c.name: c for c in report.checks if c.level != OK and c.name != "alerts"}
        for name, check in firing.items():
            state = self.active.get(name)
            text = check.reason or f"{check.name} is {check.level}"
            if state is None:
                state = self.active[name] = _State(Alert(name, check.level, text))
                self.resolved.pop(name, None)
                logger.warning("alert %s firing: %s", name, text, extra={"alert": name})
            worse = _RANK[check.level] > _RANK[state.alert.level]  # degraded -> down: say so now
            state.alert.text, state.alert.level = text, check.level
            if state.last_sent is None or worse or now - state.last_sent >= self.repeat_seconds:
                state.pending = {c.name for c in self.channels}
                state.last_sent = now
        for name in [n for n in self.active if n not in firing]:
            state = self.active.pop(name)
            logger.info("alert %s resolved", name, extra={"alert": name})
            state.alert.status = "resolved"
            state.pending = {c.name for c in self.channels}
            self.resolved[name] = state
        await self._deliver()

    async def _deliver(self) -> None:
        for table in (self.active, self.resolved):
            for key, state in list(table.items()):
                for channel in self.channels:
                    if channel.name not in state.pending:
                        continue
                    try:
                        await channel.send(state.alert)
                    except Exception as error:  # noqa: BLE001 - kept and retried next time
                        state.errors[channel.name] = f"{type(error).__name__}: {error}"[:300]
                        logger.error("alert %s could not be sent by %s, will retry: %s", key, channel.name, error,
                                     extra={"alert": key})
                    else:
                        state.pending.discard(channel.name)
                        state.errors.pop(channel.name, None)
                if table is self.resolved and not state.pending:
                    del table[key]

    async def run(self, stop: asyncio.Event, every: float) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the monitor must outlive any one evaluation
                logger.exception("alert evaluation failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except TimeoutError:
                pass


def channels_for(settings, send_message: Callable[[int, str], Awaitable[object]] | None) -> list[Channel]:
    channels: list[Channel] = []
    if settings.admin_chat_ids and send_message is not None:
        channels.append(TelegramChannel(send_message, settings.admin_chat_ids))
    if settings.alert_webhook_url:
        channels.append(WebhookChannel(settings.alert_webhook_url))
    return channels
