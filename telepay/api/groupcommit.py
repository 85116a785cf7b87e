"""Group commit: concurrent requests share one transaction, and each is answered only after
the transaction that holds its rows has committed.

Under a storm of IPNs most of a request's cost was its own transaction: the driver's work,
the round trips, the commit, and on a busy process the wait for the interpreter lock after
each. Here a few requests at a time (`leaders`) record their own item straight away; the
requests that arrive meanwhile queue up, and a leader that finishes hands the whole queue (up
to `max_batch`) to the first request in it, which leads the next transaction. So batches grow
with the load, and a lone request pays nothing extra. Durability is unchanged: nothing is
answered before its commit.

The lead comes with a resource (a database connection). While there is a successor the
resource is handed on with the lead; when the queue runs dry it is kept for the next leader
(at most one per leader) instead of closed. A pool checkout with its liveness check cost as
much as the batch's own statement, and an IPN storm arrives in bursts with gaps between them.
A resource that sat idle longer than `recheck_after` seconds is checked before it is used,
and one that fails the check, or whose batch failed, is closed and replaced.

One bad item never fails its neighbours: when a batch of several fails, its resource is closed
(its state is unknown) and each item is committed again alone, on a fresh resource, so only the
item that cannot be stored is answered with the failure. (`commit` stores all or nothing, so
nothing of the failed batch was kept, and an item committed twice is the caller's to make
harmless: the IPN statement is idempotent.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")

logger = logging.getLogger(__name__)


class BatchFailed(Exception):
    """The transaction holding this request's rows failed; nothing of the batch was stored."""


class _Waiter(Generic[T, C]):
    __slots__ = ("item", "ready", "batch", "resource", "outcome")

    def __init__(self, item: T):
        self.item = item
        self.ready = threading.Event()
        self.batch: list[_Waiter[T, C]] | None = None  # set when this request is to lead a batch
        self.resource: C | None = None  # handed on with the lead, if the last leader had one
        self.outcome: object = None


class GroupCommit(Generic[T, R, C]):
    """`submit(item)` returns `commit(resource, [..., item, ...])`'s outcome for that item, or
    raises it when it is an exception. `commit` must return one outcome per item, in order, and
    either store the whole batch or raise. `open()` makes a resource; `close(resource, failure)`
    ends it, told of the failure if a batch failed on it; `check(resource)` raises if a kept
    resource that sat idle can no longer be used. `close_idle()` closes the kept resources."""

    def __init__(self, commit: Callable[[C, list[T]], list[R | Exception]], *,
                 open: Callable[[], C], close: Callable[[C, Exception | None], None],
                 check: Callable[[C], None] = lambda resource: None, recheck_after: float = 10.0,
                 leaders: int = 2, max_batch: int = 64, monotonic: Callable[[], float] = time.monotonic):
        self._commit = commit
        self._open = open
        self._close = close
        self._check = check
        self._recheck_after = recheck_after
        self._monotonic = monotonic
        self._max_leaders = leaders
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[_Waiter[T, C]] = deque()
        self._leaders = 0  # invariant: the queue is empty unless every leader is busy
        self._idle: list[tuple[C, float]] = []  # kept resources, each with when it was last used

    def submit(self, item: T) -> R:
        waiter: _Waiter[T, C] = _Waiter(item)
        with self._lock:
            if self._leaders < self._max_leaders:
                self._leaders += 1
                waiter.batch = [waiter]
            else:
                self._queue.append(waiter)
        if waiter.batch is None:
            waiter.ready.wait()  # either answered, or handed a batch to lead
        if waiter.batch is not None:
            self._lead(waiter.batch, waiter.resource)
        if isinstance(waiter.outcome, BaseException):
            raise waiter.outcome
        return waiter.outcome  # type: ignore[return-value]

    def _lead(self, batch: list[_Waiter[T, C]], resource: C | None) -> None:
        outcomes: list | None = None
        failure: Exception | None = None
        try:
            if resource is None:
                resource = self._take_resource()
            outcomes = self._commit(resource, [waiter.item for waiter in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"commit gave {len(outcomes)} outcomes for {len(batch)} items")
        except Exception as error:  # noqa: BLE001 - any failure of the batch: retried item by item
            if len(batch) > 1:
                resource, outcomes = self._one_by_one(batch, resource, error)
            else:
                failure = error
                outcomes = [_failed(error)]
        finally:
            if outcomes is None:  # interrupted by a BaseException: still answer everyone
                failure = BatchFailed("interrupted")
                outcomes = [BatchFailed("interrupted") for _ in batch]
            handed_on = to_close = None
            with self._lock:
                successor = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
                if not successor:
                    self._leaders -= 1
                if resource is not None:
                    if failure is not None or (not successor and len(self._idle) >= self._max_leaders):
                        to_close = resource
                    elif successor:
                        handed_on = resource
                    else:
                        self._idle.append((resource, self._monotonic()))
            if to_close is not None:
                self._close_quietly(to_close, failure)
            for waiter, outcome in zip(batch, outcomes):
                waiter.batch = None
                waiter.outcome = outcome
                waiter.ready.set()
            if successor:
                successor[0].batch = successor
                successor[0].resource = handed_on
                successor[0].ready.set()

    def _one_by_one(self, batch: list[_Waiter[T, C]], resource: C | None,
                    error: Exception) -> tuple[C | None, list]:
        """After a failed batch: commit each item alone, so the failure stays with its cause.
        Returns a resource fit for reuse (or None) and one outcome per item."""
        logger.warning("a batch of %d failed (%s: %s); committing its items one by one", len(batch),
                       type(error).__name__, error)
        if resource is not None:
            self._close_quietly(resource, error)
            resource = None
        outcomes: list = []
        for waiter in batch:
            try:
                if resource is None:
                    resource = self._open()
                [outcome] = self._commit(resource, [waiter.item])
                outcomes.append(outcome)
            except Exception as alone:  # noqa: BLE001 - this item's own failure (or the resource's)
                outcomes.append(_failed(alone))
                if resource is not None:
                    self._close_quietly(resource, alone)
                    resource = None
        return resource, outcomes

    def _take_resource(self) -> C:
        """A kept resource (the most recently used: the likeliest to be alive), checked if it sat
        idle too long, or else a new one."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                resource, used_at = self._idle.pop()
            if self._monotonic() - used_at <= self._recheck_after:
                return resource
            try:
                self._check(resource)
                return resource
            except Exception as failure:  # noqa: BLE001 - a dead resource is replaced, not fatal
                logger.info("a kept resource failed its check; replacing it")
                self._close_quietly(resource, failure)
        return self._open()

    def close_idle(self) -> None:
        """Close the kept resources (at shutdown); resources in use are closed by their batch."""
        with self._lock:
            idle, self._idle = self._idle, []
        for resource, _ in idle:
            self._close_quietly(resource, None)

    def _close_quietly(self, resource: C, failure: Exception | None) -> None:
        try:
            self._close(resource, failure)
        except Exception:  # noqa: BLE001 - the batch's answers matter more than a failed close
            logger.warning("closing a group commit's resource failed", exc_info=True)


def _failed(failure: Exception) -> BatchFailed:
    # One exception object per request: each is raised in its own thread with its own traceback.
    error = BatchFailed(f"{type(failure).__name__}: {failure}")
    error.__cause__ = failure
    return error
