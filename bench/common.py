"""Shared benchmark plumbing: a load generator in its own process, percentiles, the machine's
load, and `telepay run` against the sandboxes."""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx

from telepay_sandbox.harness import TelepayProcess, sandbox_env


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def line(self, label: str) -> str:
        return (f"{label:28} {self.rate:9.1f} req/s   p50 {self.pct(50):7.2f} ms   p99 {self.pct(99):7.2f} ms"
                f"   errors {self.errors}")


def _load_in_child(url, requests, concurrency, ok, results):
    results.put(_run_load(url, requests, concurrency, ok))


def run_load(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int,
             ok: Callable[[httpx.Response], bool]) -> LoadResult:
    """POST every (body, headers) once, from `concurrency` keep-alive clients in a separate
    process, so the load generator does not share the server's interpreter lock."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_load_in_child, args=(url, requests, concurrency, ok, results))
    child.start()
    result = results.get()
    child.join()
    return result


def accepted(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json().get("status") == "accepted"


def any_answer(response: httpx.Response) -> bool:
    return True


def _run_load(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int,
              ok: Callable[[httpx.Response], bool]) -> LoadResult:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    chunks = [requests[i::concurrency] for i in range(concurrency)]
    barrier = threading.Barrier(concurrency + 1)

    def client(chunk):
        mine = []
        bad = 0
        with httpx.Client(timeout=30) as http:
            http.get(url.rsplit("/", 2)[0] + "/health")  # open the connection before the clock starts
            barrier.wait()
            for body, headers in chunk:
                started = time.perf_counter()
                response = http.post(url, content=body, headers=headers)
                mine.append((time.perf_counter() - started) * 1000)
                bad += not ok(response)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return LoadResult(len(requests), time.perf_counter() - started, latencies, errors[0])


def median(values: list[float]) -> float:
    return statistics.median(values)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def load_average() -> str:
    """The machine's 1/5/15-minute load, to print beside figures taken on a shared machine."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# Loopback port 9 (discard): without a NOWPayments sandbox, provider calls fail fast, never leave.
_NOTHING_LISTENS = "http://127.0.0.1:9"


@contextmanager
def running_telepay(database_url: str, telegram, *, nowpayments=None, extra: dict[str, str] | None = None,
                    log_name: str = "telepay.log") -> Iterator[TelepayProcess]:
    """`telepay run` against the sandbox Telegram (and NOWPayments if given), stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="telepay-bench-") as tmp:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=telegram.token,
                          bot_username=telegram.bot.username, data_dir=Path(tmp), database_url=database_url,
                          nowpayments_base_url=nowpayments.base_url if nowpayments else _NOTHING_LISTENS,
                          extra=extra)
        process = TelepayProcess(env, Path(tmp) / log_name)
        process.start()
        try:
            yield process
        finally:
            try:
                process.stop()  # graceful: the bot confirms its last updates to the sandbox
            finally:
                process.kill()
