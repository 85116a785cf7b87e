"""The demo's output: a timeline of who did what, and a closing summary of one line per fact.

Printing is what the demo is for, so this module (and only the demo) prints.
"""

from __future__ import annotations

import time
from decimal import Decimal


def quote(text: str) -> str:
    """A bot message's first line in quotes, with "…" when there is more."""
    first, _, rest = text.partition("\n")
    return f"“{first}{' …' if rest.strip() else ''}”"


def amount(value: Decimal, unit: str) -> str:
    """An exact crypto amount: every digit the chain has, none it has not."""
    text = format(value.normalize(), "f") if value else "0"
    return f"{text} {unit}"


class Timeline:
    """Timeline lines as they happen (`say`), facts for the summary (`fact`)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.facts: dict[str, str] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, who: str, what: str) -> None:
        print(f"[{self.elapsed():5.1f}s] {who:>9} | {what}", flush=True)

    def act(self, title: str) -> None:
        print(f"\n--- {title} ---", flush=True)

    def fact(self, name: str, value: object) -> None:
        self.facts[name] = str(value)

    def summary(self, ok: bool) -> None:
        print("\nSummary")
        for name, value in self.facts.items():
            print(f"  {name:20} {value}")
        print(f"  {'result':20} {'OK' if ok else 'FAILED'} in {self.elapsed():.1f} s", flush=True)
