"""The engine factory for the three database modes, and the session factory.

- `DATABASE_URL`: used as given (a bare `postgresql://` URL is given the pg8000 driver).
- `CLOUD_SQL_CONNECTION_NAME`: the Cloud SQL Python Connector opens pg8000 connections.
- neither: an embedded PostgreSQL from the `pgserver` wheel in `TELEPAY_DATA_DIR/pg`, reached
  over its unix socket, so a fresh machine needs no database set-up.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from telepay.config import ConfigError, Settings

logger = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """Give plain PostgreSQL URLs the pg8000 driver; refuse anything that is not PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError("DATABASE_URL must be a PostgreSQL URL", ["DATABASE_URL"])
    if parsed.get_driver_name() != "pg8000":
        parsed = parsed.set(drivername="postgresql+pg8000")
    return parsed.render_as_string(hide_password=False)


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded server in `data_dir/pg` and return its socket URL."""
    import pgserver  # imported here: only the embedded mode needs it

    pg_dir = (Path(data_dir) / "pg").resolve()
    pg_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": the server stops when the last process using it exits; its data stays.
    pgserver.get_server(pg_dir, cleanup_mode="stop")
    logger.info("embedded PostgreSQL in %s", pg_dir)
    return f"postgresql+pg8000://postgres@/postgres?unix_sock={pg_dir}/.s.PGSQL.5432"


def describe(settings: Settings) -> str:
    if settings.database_url:
        return "DATABASE_URL " + make_url(normalise_url(settings.database_url)).render_as_string()
    if settings.cloud_sql_connection_name:
        return f"Cloud SQL {settings.cloud_sql_connection_name}/{settings.database_name}"
    return f"embedded PostgreSQL in {Path(settings.data_dir) / 'pg'}"


def make_engine(settings: Settings) -> Engine:
    pool = dict(
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
    )
    if settings.database_url:
        engine = create_engine(normalise_url(settings.database_url), **pool)
    elif settings.cloud_sql_connection_name:
        engine = _cloud_sql_engine(settings, pool)
    else:
        engine = create_engine(embedded_url(settings.data_dir), **pool)
    _set_up_connections(engine)
    _ping_on_checkout(engine)
    return engine


def _cloud_sql_engine(settings: Settings, pool: dict) -> Engine:
    missing = [
        name
        for name, value in (
            ("DATABASE_NAME", settings.database_name),
            ("DATABASE_USER", settings.database_user),
            ("DATABASE_PASSWORD", settings.database_password),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            "CLOUD_SQL_CONNECTION_NAME is set, so these are needed too: " + ", ".join(missing), missing
        )
    from google.cloud.sql.connector import Connector

    connector = Connector()

    def connect():
        return connector.connect(
            settings.cloud_sql_connection_name,
            "pg8000",
            user=settings.database_user,
            password=settings.database_password,
            db=settings.database_name,
        )

    engine = create_engine("postgresql+pg8000://", creator=connect, **pool)
    # The connector owns a background refresh thread; close it with the engine.
    event.listen(engine, "engine_disposed", lambda _engine: connector.close())
    return engine


def _set_up_connections(engine: Engine) -> None:
    """Every new connection talks UTC and sends without delay."""

    @event.listens_for(engine, "connect")
    def _set_up(dbapi_connection, _record):
        _no_delay(dbapi_connection)
        _run_alone(dbapi_connection, "SET TIME ZONE 'UTC'")  # a session setting


def _no_delay(dbapi_connection) -> None:
    """Turn off Nagle's algorithm on a TCP connection to the server.

    pg8000 writes through an 8 KiB buffer and leaves the socket as the OS made it. A message
    longer than the buffer (a batch of IPNs is one) goes out as a full segment and a short one;
    Nagle holds the short one until the first is acknowledged, and the server delays that
    acknowledgement by up to 40 ms. Measured: a batch of 8 IPNs took 44 ms instead of 1 ms.
    libpq sets TCP_NODELAY for the same reason. A unix socket has no such delay.
    """
    sock = getattr(dbapi_connection, "_usock", None)  # pg8000 keeps the socket here
    if sock is None:
        logger.warning("cannot reach the database connection's socket to set TCP_NODELAY")
    elif sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _run_alone(dbapi_connection, sql: str) -> None:
    """Run one statement in autocommit: one round trip, and no transaction left open."""
    dbapi_connection.autocommit = True
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute(sql)
        cursor.close()
    finally:
        dbapi_connection.autocommit = False


def ping(dbapi_connection) -> None:
    """One round trip that proves the connection alive and leaves no transaction open."""
    _run_alone(dbapi_connection, "SELECT 1")


def _ping_on_checkout(engine: Engine) -> None:
    """Every connection handed out is checked first (`ping`).

    SQLAlchemy's own `pool_pre_ping` costs two round trips with pg8000 (the driver opens a
    transaction before the SELECT) and leaves that transaction open, so the statement that
    follows cannot run on its own. A connection that fails the check is replaced by the pool.
    """

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, _record, _proxy):
        try:
            ping(dbapi_connection)
        except Exception as failure:  # noqa: BLE001 - any failure means this connection is done
            raise DisconnectionError("connection failed its liveness check") from failure


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
