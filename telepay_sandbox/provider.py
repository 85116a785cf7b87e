"""The one entry point of every emulated provider (NOWPayments, ChangeNOW): failures queued by
tests (`fail_next`), the provider's own routes and error shapes, and the log of calls a test
asserts retries against. `loopback.LoopbackServer` serves it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from telepay_sandbox.loopback import Request, Response


@dataclass
class Fault:
    """An injected failure: answer `status` (or, with no status, do the work and answer late)."""

    route: str
    method: str | None
    status: int | None
    remaining: int
    delay: float = 0.0
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        route = self.route.rstrip("/")
        under = path.rstrip("/") == route or path.startswith(route + "/")
        return under and (self.method is None or self.method.upper() == method)


class Faults:
    """Failures queued by tests with `fail_next`, consumed by the requests that match first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def add(self, route: str, method: str | None, status: int | None, count: int, delay: float,
            retry_after: int | None) -> None:
        if status is None and delay <= 0:
            raise ValueError("give a status to answer, or a delay to answer late")
        with self._lock:
            self._queue.append(Fault(route, method, status, count, delay, retry_after))

    def take(self, method: str, path: str) -> Fault | None:
        """The first queued fault for `path` (the route or below it), counted down by one."""
        with self._lock:
            for fault in self._queue:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None


@dataclass(frozen=True)
class Call:
    """One request as a sandbox answered it (what a test asserts retries against)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    time: float


class ProviderError(Exception):
    """An error an emulated provider answers with, in that provider's own JSON shape."""

    def response(self) -> Response:
        raise NotImplementedError


class CallLog(Protocol):
    """What a provider's API needs of its sandbox to inject faults and log calls."""

    faults: Faults
    lock: threading.RLock
    calls: list[Call]


class ProviderApi:
    """The one entry point of every emulated provider: a queued fault answers first (or holds
    the real answer back), else the provider's `route`; every call is logged for tests."""

    def __init__(self, log: CallLog) -> None:
        self._log = log

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    def injected(self, status: int) -> Response:
        """The provider's answer for an injected failure with `status`."""
        raise NotImplementedError

    def __call__(self, request: Request) -> Response:
        fault = self._log.faults.take(request.method, request.path)
        if fault is not None and fault.status is not None:
            response = self.injected(fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
        else:
            try:
                response = self.route(request)
            except ProviderError as error:
                response = error.response()
        if fault is not None:
            response.delay = fault.delay
        with self._log.lock:
            self._log.calls.append(Call(request.method, request.path, request.query, response.status, time.time()))
        return response
