"""Shared benchmark plumbing: a load generator in its own process, percentiles."""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable

import httpx


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
