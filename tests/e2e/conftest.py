"""Fixtures shared by the end-to-end fault tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from telepay.models import migrate
from telepay.models.engine import embedded_url


@pytest.fixture(scope="module")
def own_server():
    """A migrated embedded PostgreSQL that only this module uses, so it may be frozen.
    (Outside pytest's temporary tree, whose 0700 directories the server's own user cannot enter.)"""
    import pgserver

    data_dir = Path(tempfile.mkdtemp(prefix="telepay-faults-"))
    data_dir.chmod(0o755)
    server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    url = embedded_url(data_dir)
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url, data_dir / "pg"
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


