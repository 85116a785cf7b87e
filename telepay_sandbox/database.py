"""Scratch PostgreSQL databases for tests and benchmarks: created fresh, migrated, dropped.

The server is the one `TELEPAY_TEST_DATABASE_URL` names, or else an embedded one started in a
temporary directory. A fresh database per run keeps concurrent runs out of each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from telepay.models import migrate
from telepay.models.engine import embedded_url, normalise_url


def server_url(scratch_dir: Path | None = None) -> str:
    url = os.environ.get("TELEPAY_TEST_DATABASE_URL")
    if url:
        return normalise_url(url)
    return embedded_url(scratch_dir or Path(tempfile.mkdtemp(prefix="telepay-pg-")))


@contextmanager
def scratch_database(prefix: str = "telepay_scratch", scratch_dir: Path | None = None) -> Iterator[str]:
    """Yield the URL of a new database at the current schema head; drop it afterwards."""
    server = make_url(server_url(scratch_dir))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Seeded by migrations, not by tests: kept when a test empties the database.
KEEP_TABLES = frozenset({"payout_currencies", "alembic_version"})


def empty_tables(engine) -> None:
    """Remove every row a test or a run made, keeping the migrations' own data."""
    from telepay.models import Base

    tables = [t.name for t in Base.metadata.sorted_tables if t.name not in KEEP_TABLES]
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
