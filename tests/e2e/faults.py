"""Helpers for the fault-injection tests: the environment of a `telepay run` wired to the
sandboxes, and freezing a PostgreSQL server of our own (SIGSTOP) as a hung database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from telepay_sandbox.harness import TelepayProcess, sandbox_env

TOKEN = "111:e2e-faults-token"


def server_pids(pg_dir: Path) -> list[int]:
    postmaster = int((pg_dir / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


def freeze(pg_dir: Path) -> list[int]:
    """SIGSTOP the server and every backend; the postmaster first, so none is forked after the list."""
    pids = server_pids(pg_dir)
    os.kill(pids[0], signal.SIGSTOP)
    pids = server_pids(pg_dir)
    signal_all(pids, signal.SIGSTOP)
    return pids


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def env_for(telegram, tmp_path, **extra):
    database_url = extra.pop("database_url", None)
    return sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                       data_dir=tmp_path, database_url=database_url, extra=extra)


def wait_for_log(process: TelepayProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in process.log():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{process.log()}")


