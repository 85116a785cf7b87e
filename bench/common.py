"""Shared benchmark plumbing: a fresh migrated database, a load generator, percentiles."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from telepay.models import migrate
from telepay.models.engine import embedded_url, normalise_url


def fresh_database() -> tuple[str, Callable[[], None]]:
    """A new database on TELEPAY_TEST_DATABASE_URL's server (or an embedded one), migrated."""
    url = os.environ.get("TELEPAY_TEST_DATABASE_URL")
    server = make_url(normalise_url(url) if url else embedded_url(Path(tempfile.mkdtemp(prefix="bench-pg-"))))
    name = f"telepay_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return database_url, drop


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
