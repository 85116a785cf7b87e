"""Heartbeats of the loops that must keep turning (the worker, the poll supervisor), read by
`/status` and the systemd watchdog. Plain floats written on the loop, read from any thread."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Beats:
    clock: Callable[[], float] = time.monotonic
    started: float = field(default_factory=time.monotonic)
    last: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.last[name] = self.clock()

    def age(self, name: str) -> float | None:
        """Seconds since `name` last beat; None if it never did (not run in this process)."""
        at = self.last.get(name)
        return None if at is None else self.clock() - at

    def uptime(self) -> float:
        return self.clock() - self.started
