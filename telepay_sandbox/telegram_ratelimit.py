"""Telegram-like flood limits for messages the bot sends: token buckets, answered with 429s.

Telegram publishes guidance, not exact numbers: about 30 messages/s overall, 20 per minute in a
group or channel, about one per second in a private chat (short bursts tolerated). The defaults
follow that; tests tighten them or switch them off (`RateLimits.off()`).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    global_per_second: float = 30.0
    global_burst: int = 30
    private_per_second: float = 1.0
    private_burst: int = 3
    group_per_minute: float = 20.0
    group_burst: int = 20
    enabled: bool = True

    @classmethod
    def off(cls) -> RateLimits:
        return cls(enabled=False)


class TokenBucket:
    def __init__(self, rate_per_second: float, capacity: int, now: float) -> None:
        self.rate = rate_per_second
        self.capacity = max(1, capacity)
        self.tokens = float(self.capacity)
        self.stamp = now

    def wait_needed(self, now: float) -> float:
        """Seconds until one token is available (0 if one is available now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class RateLimiter:
    """One global bucket plus one per chat; a send needs a token from both or nothing is spent."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(limits)

    def configure(self, limits: RateLimits | None) -> None:
        with self._lock:
            self.limits = limits or RateLimits.off()
            self._global: TokenBucket | None = None
            self._per_chat: dict[int, TokenBucket] = {}

    def retry_after(self, chat_id: int, is_private: bool) -> int | None:
        """Spend tokens for one message to `chat_id`, or say how many seconds to wait (>= 1)."""
        limits = self.limits
        if not limits.enabled:
            return None
        now = time.monotonic()
        with self._lock:
            if self._global is None:
                self._global = TokenBucket(limits.global_per_second, limits.global_burst, now)
            chat_bucket = self._per_chat.get(chat_id)
            if chat_bucket is None:
                if is_private:
                    chat_bucket = TokenBucket(limits.private_per_second, limits.private_burst, now)
                else:
                    rate = limits.group_per_minute / 60.0
                    chat_bucket = TokenBucket(rate, limits.group_burst, now)
                self._per_chat[chat_id] = chat_bucket
            wait = max(self._global.wait_needed(now), chat_bucket.wait_needed(now))
            if wait > 0:
                # Telegram's retry_after is a whole number of seconds, never 0.
                return max(1, math.ceil(wait))
            self._global.take()
            chat_bucket.take()
            return None
