"""The tests' embedded PostgreSQL: why it lives in a directory of its own, that it is gone
after its scratch database is dropped, and what emptying the tables between tests leaves."""

from __future__ import annotations

import os
import stat
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from telepay.models import Base, Channel, Invoice, InvoiceKind, Job, Tier
from telepay_sandbox.database import KEEP_TABLES, empty_tables, scratch_database

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


# Slow (an initdb of its own, 4 s to 14 s on a busy machine) and about pgserver and pytest, not
# about TelePay: the reason the server lives where it does, which the next test keeps true in every run.
@pytest.mark.slow
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


def test_the_embedded_server_outlives_a_new_pytest_session_and_is_removed_after_its_database(
        monkeypatch, tmp_path):
    """One server for both promises: an initdb is the slow part of either."""
    monkeypatch.delenv("TELEPAY_TEST_DATABASE_URL", raising=False)
    with scratch_database("telepay_gone") as url:
        socket = Path(make_url(url).query["unix_sock"])
        data_dir = socket.parent
        assert socket.is_socket() and (data_dir / "PG_VERSION").is_file()
        if os.geteuid() == 0:  # see AS_ROOT: only then can a 0700 directory shut the server out
            pytest_root = tmp_path.parents[1]
            mode = _tighten_as_pytest_does(pytest_root)
            try:
                _checkpoint(url)
            finally:
                pytest_root.chmod(mode)
    assert not data_dir.exists()  # no server left behind the run, no files either

def test_emptying_removes_every_row_keeps_the_seeded_ones_and_restarts_the_ids(session_factory, engine):
    """What each test's teardown relies on: no row of one test is seen by the next, ids start again
    at 1 (a sequence an insert rolled back had moved too), and the migrations' data stays."""
    def counts() -> dict[str, int]:
        with engine.connect() as connection:
            return {t.name: connection.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in Base.metadata.sorted_tables}

    seeded = counts()
    with session_factory.begin() as session:  # a chain of rows that reference each other
        channel = Channel(key="emptied", owner_user_id=7, open_chat_id=-71, closed_chat_id=-72,
                          open_title="Open", closed_title="Closed")
        channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30))
        session.add(channel)
        session.flush()
        session.add(Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                            tier_id=channel.tiers[0].id, buyer_user_id=8, price_usd=Decimal("5.00"), days=30))
    with session_factory() as session:
        session.add(Job(kind="rolled.back", payload={}))
        session.flush()  # takes an id from jobs_id_seq; the row goes with the rollback, the number does not
        session.rollback()
    assert counts()["invoices"] == 1 and seeded["payout_currencies"] > 0

    empty_tables(engine)

    assert counts() == {name: n if name in KEEP_TABLES else 0 for name, n in seeded.items()}
    with session_factory.begin() as session:
        again = Channel(key="again", owner_user_id=7, open_chat_id=-71, closed_chat_id=-72,
                        open_title="Open", closed_title="Closed")
        job = Job(kind="after", payload={})
        session.add_all([again, job])
        session.flush()
        assert (again.id, job.id) == (1, 1)
