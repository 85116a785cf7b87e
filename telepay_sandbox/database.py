"""Scratch PostgreSQL databases for tests and benchmarks: created fresh, migrated, dropped.

The server is the one `TELEPAY_TEST_DATABASE_URL` names, or else an embedded one of our own,
started for the scratch database and stopped (its files removed) right after the database is
dropped. A fresh database per run keeps concurrent runs out of each other's rows.

Where the embedded server lives matters. Run as root (containers, CI), pgserver runs PostgreSQL
as its own unprivileged `pgserver` user and opens up the directories above the data directory
so that user can reach it. pytest's temporary root (`/tmp/pytest-of-root`) is not such a
directory: every pytest session that starts resets it to mode 0700, so a server kept there lost
access to its own files mid-run (`PANIC: could not open file ".../global/pg_control":
Permission denied`), the postmaster killed every connection and shut down, and the teardown's
`DROP DATABASE` failed with "network error". The embedded server therefore gets a directory
of its own from `tempfile`, which nothing else changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from telepay.models import migrate
from telepay.models.engine import normalise_url


@contextmanager
def embedded_server() -> Iterator[str]:
    """A PostgreSQL server owned by this context: its admin URL; stopped and removed on exit.

    Stopped here rather than by pgserver's exit hook, so it outlives everything that still uses
    it (the `DROP DATABASE` above all) and nothing after it: no server is left behind a run.
    """
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="telepay-pg-"))
    server = pgserver.get_server(root / "pg", cleanup_mode="delete")
    try:
        socket = server.get_postmaster_info().socket_path  # pgserver may move it off a long path
        yield f"postgresql+pg8000://postgres@/postgres?unix_sock={socket}"
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def scratch_database(prefix: str = "telepay_scratch") -> Iterator[str]:
    """Yield the URL of a new database at the current schema head; drop it afterwards."""
    given = os.environ.get("TELEPAY_TEST_DATABASE_URL")
    with (_given(given) if given else embedded_server()) as server_url:
        server = make_url(server_url)
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        # A connection per statement: the drop at the end must not rely on one opened at the
        # start and left idle for the whole run.
        admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
        try:
            engine = create_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
            yield url
        finally:
            # FORCE: connections a test left open (a killed process's, an app's kept ones) end here.
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield normalise_url(url)


# Seeded by migrations, not by tests: kept when a test empties the database.
KEEP_TABLES = frozenset({"payout_currencies", "alembic_version"})

# The sequences of the emptied tables that have handed out a number, back to their start:
# what TRUNCATE's RESTART IDENTITY did. setval is cheap and not rolled back.
_RESTART_SEQUENCES = """
SELECT setval(s.seqrelid, s.seqstart, false)
FROM pg_sequence s
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.deptype IN ('a', 'i')
JOIN pg_class t ON t.oid = d.refobjid
WHERE t.relnamespace = current_schema()::regnamespace AND t.relname IN ({tables})
  AND pg_sequence_last_value(s.seqrelid) IS NOT NULL
"""


def empty_tables(engine) -> None:
    """Remove every row a test or a run made, keeping the migrations' own data, and restart the
    tables' id sequences.

    DELETE, children first, rather than TRUNCATE: TRUNCATE gives every table and index a new
    file even when it is empty, about 0.3 s for our tables on every call, and tests call this
    after each test. A test leaves a few rows, which DELETE removes in milliseconds; all of it
    goes to the server as one round trip (no parameters: a simple query may hold many statements).
    """
    from telepay.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in KEEP_TABLES]
    deletes = "".join(f"DELETE FROM {name};\n" for name in tables)
    restart = _RESTART_SEQUENCES.format(tables=", ".join(f"'{name}'" for name in tables))
    with engine.begin() as connection:
        connection.exec_driver_sql(deletes + restart)
