"""In-memory token-bucket rate limiting for inbound requests (per client IP, per route).

Owns the bucket arithmetic and its memory bound. Each key holds up to ``burst`` tokens, refilled
continuously at ``rate_per_minute``; a request spends one token or is refused with the whole
number of seconds until one is back (the ``Retry-After`` value). Over any interval of ``t``
seconds a key gets at most ``burst + rate * t`` requests through.

The state is per process: with several API instances each enforces its own budget, which is
fine for shedding abuse. Anything that must hold across processes or restarts belongs in
PostgreSQL instead.
"""

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

# Float refills can land a hair under a whole token (e.g. 6 s * (10/60) = 0.9999...). Without
# this slack a client that waited exactly Retry-After could be refused again. It never adds up:
# each accepted request still needs a whole token refilled since the previous one.
_EPSILON = 1e-9


class TokenBucketLimiter:
    """Token buckets keyed by anything hashable (usually the client IP); thread-safe."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_minute > 0:
            raise ValueError("rate_per_minute must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._rate = rate_per_minute / 60.0  # tokens per second
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        # waitress serves requests from several threads; every read-modify-write of a bucket
        # and of the LRU order happens under this one lock.
        self._lock = threading.Lock()
        # key -> (tokens, updated_at), least recently used first.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, bucket: tuple[float, float], now: float) -> float:
        tokens, updated_at = bucket
        # max(): a clock that steps back (only an injected one can) must not drain the bucket.
        return min(self._burst, tokens + max(0.0, now - updated_at) * self._rate)

    def _evict_full(self, now: float) -> None:
        # A bucket that has refilled to ``burst`` behaves exactly like a key never seen, so
        # dropping it forgets nothing. The least recently used end is where full buckets
        # collect; stopping at the first one still refilling keeps each call O(1) amortised,
        # and that one is full at most burst / rate seconds later.
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if self._tokens(bucket, now) < self._burst:
                return
            del self._buckets[key]

    def peek(self, key: Hashable) -> tuple[bool, int]:
        """Whether ``key`` has a token now, without spending it: ``(True, 0)`` or
        ``(False, retry_after_seconds >= 1)``. For budgets spent only on some outcomes."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            tokens = self._burst if bucket is None else self._tokens(bucket, now)
            if tokens >= 1.0 - _EPSILON:
                return True, 0
            return False, max(1, math.ceil((1.0 - tokens) / self._rate - _EPSILON))

    def hit(self, key: Hashable) -> tuple[bool, int]:
        """Spend a token for ``key``: ``(True, 0)``, or ``(False, retry_after_seconds >= 1)``."""
        with self._lock:
            now = self._clock()
            self._evict_full(now)
            bucket = self._buckets.pop(key, None)
            tokens = self._burst if bucket is None else self._tokens(bucket, now)
            if tokens >= 1.0 - _EPSILON:
                tokens -= 1.0
                result = (True, 0)
            else:
                wait = (1.0 - tokens) / self._rate
                result = (False, max(1, math.ceil(wait - _EPSILON)))
            self._buckets[key] = (tokens, now)  # re-inserted at the most recently used end
            # The hard bound for a flood of distinct keys (e.g. one client rotating through
            # IPv6 addresses): the least recently used go first. Only a bucket that is still
            # refilling loses anything, and its key just gets a fresh burst; max_keys should sit
            # well above the number of clients active within burst / rate seconds.
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return result
