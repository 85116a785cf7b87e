"""The tests' embedded PostgreSQL: why it lives in a directory of its own, and that it is gone
after its scratch database is dropped."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from telepay_sandbox.database import embedded_server, scratch_database

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only as root does pgserver run PostgreSQL as "
                                                       "its own user, which a 0700 directory shuts out")


def _checkpoint(url: str) -> None:
    """A checkpoint makes the server read and write its own control file."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()


def _tighten_as_pytest_does(root: Path) -> int:
    """What every pytest session does to its temporary root when it starts: mode 0700."""
    mode = stat.S_IMODE(root.stat().st_mode)
    root.chmod(mode & ~0o077)
    return mode


@AS_ROOT
def test_a_server_kept_under_pytests_temporary_root_dies_when_a_session_starts(tmp_path):
    """The failure seen at teardown (`DROP DATABASE ... WITH (FORCE)`: network error), reproduced."""
    import pgserver

    pytest_root = tmp_path.parents[1]  # /tmp/pytest-of-<user>, above this session's basetemp
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="delete")  # where the tests' server was
    url = f"postgresql+pg8000://postgres@/postgres?unix_sock={server.get_postmaster_info().socket_path}"
    _checkpoint(url)
    mode = _tighten_as_pytest_does(pytest_root)
    try:
        with pytest.raises(DBAPIError):  # PANIC: could not open file "global/pg_control"
            _checkpoint(url)
    finally:
        pytest_root.chmod(mode)
        server.cleanup()


@AS_ROOT
def test_the_tests_server_lives_where_no_pytest_session_reaches(tmp_path):
    pytest_root = tmp_path.parents[1]
    with embedded_server() as url:
        mode = _tighten_as_pytest_does(pytest_root)
        try:
            _checkpoint(url)
        finally:
            pytest_root.chmod(mode)


def test_the_embedded_server_is_stopped_and_removed_after_its_database_is_dropped(monkeypatch):
    monkeypatch.delenv("TELEPAY_TEST_DATABASE_URL", raising=False)
    with scratch_database("telepay_gone") as url:
        socket = Path(make_url(url).query["unix_sock"])
        data_dir = socket.parent
        assert socket.is_socket() and (data_dir / "PG_VERSION").is_file()
    assert not data_dir.exists()  # no server left behind the run, no files either
