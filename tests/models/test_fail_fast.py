"""A hung database is noticed within seconds, and the engine recovers alone when it answers again.

The hang is real: every process of a scratch embedded PostgreSQL (ours alone, in a temporary
directory) is stopped with SIGSTOP, which is what a frozen server or a half-open connection
looks like from the client: the socket stays open and nothing ever answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from telepay.config_load import load_settings
from telepay.models.engine import embedded_url, make_engine


def server_pids(pg_dir: Path) -> list[int]:
    postmaster = int((pg_dir / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


@contextmanager
def frozen(pg_dir: Path):
    pids = server_pids(pg_dir)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def scratch_server():
    """Our own server, so stopping it touches no one else; outside pytest's 0700 temporary
    tree, which the server's own user could not enter to stop it afterwards."""
    import pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="telepay-hung-"))
    data_dir.chmod(0o755)
    server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    yield embedded_url(data_dir), data_dir / "pg"
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


def fast_engine(url: str, **extra: str):
    return make_engine(load_settings({"DATABASE_URL": url, "DB_CONNECT_TIMEOUT_SECONDS": "1",
                                      "DB_STATEMENT_TIMEOUT_SECONDS": "2", "DB_POOL_SIZE": "2", **extra},
                                     env_file=None))


def test_a_hung_server_is_noticed_within_seconds_and_the_engine_recovers(scratch_server):
    url, pg_dir = scratch_server
    engine = fast_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        with frozen(pg_dir):
            # A pooled connection fails its checkout check; the fresh one fails to connect.
            started = time.monotonic()
            with pytest.raises(DBAPIError):
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            assert time.monotonic() - started < 6
        with engine.connect() as connection:  # answered again: nothing to restart
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_a_statement_in_flight_when_the_server_hangs_fails_after_the_read_timeout(scratch_server):
    url, pg_dir = scratch_server
    engine = fast_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            pids = server_pids(pg_dir)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(DBAPIError):
                    connection.execute(text("SELECT 2"))
                waited = time.monotonic() - started
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
        assert 2 <= waited < 6  # statement timeout 2 s + connect timeout 1 s
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_the_server_cancels_a_statement_past_the_statement_timeout(database_url):
    engine = fast_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "2s"
            assert connection.execute(text("SHOW TIME ZONE")).scalar() == "UTC"
            with pytest.raises(DBAPIError, match="statement timeout"):
                connection.execute(text("SELECT pg_sleep(5)"))
    finally:
        engine.dispose()


def test_tcp_connections_probe_idle_peers(database_url):
    import socket

    engine = fast_engine(database_url, DB_KEEPALIVE_SECONDS="12")
    try:
        with engine.connect() as connection:
            sock = connection.connection.driver_connection._usock
            if sock.family == socket.AF_UNIX:
                pytest.skip("the test server is on a unix socket: keepalive is a TCP option")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 12
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 4
    finally:
        engine.dispose()
