"""The one way tests, benchmarks and the demo wait for something the running product does."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], what: str, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy and return that; after `timeout`
    seconds raise TimeoutError naming `what` (a phrase: "the invite was sent")."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)
    return value


async def until_async(condition: Callable[[], T], what: str, timeout: float = 10.0, interval: float = 0.02) -> T:
    """`until` for a test that runs the worker on its own event loop: waits without blocking it."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(interval)
    return value
