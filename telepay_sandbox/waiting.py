"""The one way tests, benchmarks and the demo wait for something the running product does."""

from __future__ import annotations

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
