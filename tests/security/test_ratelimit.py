"""Token-bucket limiter: budgets, Retry-After, bounded memory, thread safety."""

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telepay.security.ratelimit import TokenBucketLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(rate=10, burst=20, max_keys=100_000):
    clock = FakeClock()
    return TokenBucketLimiter(rate, burst, max_keys=max_keys, clock=clock), clock


def test_burst_then_refill_at_the_rate():
    limiter, clock = make(rate=10, burst=20)  # one token every 6 s
    assert [limiter.hit("ip")[0] for _ in range(20)] == [True] * 20
    assert limiter.hit("ip") == (False, 6)
    clock.now += 5
    assert limiter.hit("ip") == (False, 1)
    clock.now += 1
    assert limiter.hit("ip") == (True, 0)
    assert limiter.hit("ip") == (False, 6)


def test_keys_are_independent():
    limiter, _ = make(rate=1, burst=1)
    assert limiter.hit("a") == (True, 0)
    assert limiter.hit("a")[0] is False
    assert limiter.hit("b") == (True, 0)
    assert limiter.hit(("route", "a")) == (True, 0)


def test_retry_after_is_whole_seconds_and_rounds_up():
    limiter, clock = make(rate=7, burst=1)  # a token every 8.571... s
    limiter.hit("k")
    assert limiter.hit("k") == (False, 9)
    clock.now += 8.5
    assert limiter.hit("k") == (False, 1)


def test_fast_rates_still_say_at_least_one_second():
    limiter, clock = make(rate=6000, burst=1)  # a token every 10 ms
    limiter.hit("k")
    assert limiter.hit("k") == (False, 1)
    clock.now += 0.01
    assert limiter.hit("k") == (True, 0)


def test_refused_hits_do_not_spend_tokens():
    limiter, clock = make(rate=60, burst=1)
    limiter.hit("k")
    for _ in range(100):
        assert limiter.hit("k")[0] is False
    clock.now += 1
    assert limiter.hit("k") == (True, 0)


def test_a_clock_stepping_back_does_not_drain_or_crash():
    limiter, clock = make(rate=60, burst=2)
    limiter.hit("k")
    clock.now -= 100
    assert limiter.hit("k") == (True, 0)
    assert limiter.hit("k")[0] is False


def test_full_buckets_are_evicted():
    limiter, clock = make(rate=60, burst=5)
    for key in range(1000):
        limiter.hit(key)
    assert len(limiter) == 1000
    clock.now += 5  # every bucket is full again
    limiter.hit("new")
    assert len(limiter) == 1


def test_eviction_stops_at_the_first_bucket_still_refilling():
    limiter, clock = make(rate=60, burst=5)
    limiter.hit("old")
    clock.now += 1
    for _ in range(5):
        limiter.hit("drained")
    clock.now += 4  # "old" full; "drained" has 4 of 5 tokens
    limiter.hit("x")
    assert len(limiter) == 2  # "drained" and "x"


def test_lru_drops_the_least_recently_used_at_max_keys():
    limiter, _ = make(rate=1, burst=1, max_keys=2)
    limiter.hit("a")
    limiter.hit("b")
    limiter.hit("a")  # refused, but "a" is now the most recently used
    limiter.hit("c")  # drops "b"
    assert len(limiter) == 2
    assert limiter.hit("a")[0] is False  # kept: still throttled
    assert limiter.hit("b") == (True, 0)  # forgotten: a fresh bucket


def test_memory_stays_bounded_under_a_million_distinct_keys():
    limiter, clock = make(rate=10, burst=20, max_keys=1000)
    for i in range(1_000_000):
        limiter.hit(i)
        if i % 1024 == 0:
            clock.now += 0.001
            assert len(limiter) <= 1000
    assert len(limiter) == 1000


def test_threads_share_one_budget():
    limiter, _ = make(rate=1, burst=50)
    allowed = []
    start = threading.Barrier(8)

    def worker():
        start.wait()
        allowed.append(sum(limiter.hit("same-ip")[0] for _ in range(500)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 50


def test_threads_with_distinct_keys_respect_max_keys():
    limiter, _ = make(rate=1, burst=1, max_keys=100)

    def worker(prefix):
        for i in range(5000):
            limiter.hit((prefix, i))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(limiter) == 100


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"),
    [(0, 20, 10), (-1, 20, 10), (10, 0, 10), (10, -5, 10), (10, 20, 0), (float("nan"), 20, 10)],
)
def test_bad_configuration(rate, burst, max_keys):
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate, burst, max_keys=max_keys)


def test_default_clock_works():
    limiter = TokenBucketLimiter(60, 1)
    assert limiter.hit("k") == (True, 0)
    assert limiter.hit("k")[0] is False


rates = st.sampled_from([1, 5, 10, 30, 60, 600, 7, 13.5])
gaps = st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=150)


@settings(deadline=None)
@given(rate=rates, burst=st.integers(1, 25), gaps=gaps)
def test_never_more_than_burst_plus_rate_times_t(rate, burst, gaps):
    limiter, clock = make(rate=rate, burst=burst)
    accepted = []
    for gap in gaps:
        clock.now += gap
        if limiter.hit("k")[0]:
            accepted.append(clock.now)
    # Any window [accepted[i], accepted[j]] holds j - i + 1 accepted requests.
    for i in range(len(accepted)):
        for j in range(i, len(accepted)):
            elapsed = accepted[j] - accepted[i]
            assert j - i + 1 <= burst + rate / 60 * elapsed + 1e-6


@settings(deadline=None)
@given(rate=rates, burst=st.integers(1, 25), gaps=gaps)
def test_waiting_retry_after_is_always_enough(rate, burst, gaps):
    limiter, clock = make(rate=rate, burst=burst)
    for gap in gaps:
        clock.now += gap
        allowed, retry_after = limiter.hit("k")
        if allowed:
            assert retry_after == 0
            continue
        assert isinstance(retry_after, int) and retry_after >= 1
        # A whole second less is not enough (refused hits spend nothing, so probing is free)...
        if retry_after > 1:
            clock.now += retry_after - 1
            assert limiter.hit("k")[0] is False
            clock.now += 1
        else:
            clock.now += retry_after
        # ...and exactly Retry-After is.
        assert limiter.hit("k") == (True, 0)
