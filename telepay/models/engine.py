"""The engine factory for the three database modes, and the session factory.

- `DATABASE_URL`: used as given (a bare `postgresql://` URL is given the pg8000 driver).
- `CLOUD_SQL_CONNECTION_NAME`: the Cloud SQL Python Connector opens pg8000 connections.
- neither: an embedded PostgreSQL from the `pgserver` wheel in `TELEPAY_DATA_DIR/pg`, reached
  over its unix socket, so a fresh machine needs no database set-up.

Every connection, in every mode, fails fast: a connect timeout, a server-side statement
timeout, a socket read timeout a little beyond it (a server that stops answering, hung or
half-open, raises instead of freezing the thread), TCP keepalive, and a liveness check on
checkout bounded by the connect timeout.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import pg8000.dbapi
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
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
        return "DATABASE_URL " + make_url(normalise_url(settings.database_url.get_secret_value())).render_as_string()
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
    # pg8000's `timeout` bounds the connect and, until `_set_up` widens it, every read.
    connect_args = {"timeout": settings.db_connect_timeout_seconds, "tcp_keepalive": True}
    if settings.database_url:
        engine = create_engine(normalise_url(settings.database_url.get_secret_value()), connect_args=connect_args,
                               **pool)
    elif settings.cloud_sql_connection_name:
        engine = _cloud_sql_engine(settings, pool)
    else:
        engine = create_engine(embedded_url(settings.data_dir), connect_args=connect_args, **pool)
    if not settings.cloud_sql_connection_name:
        event.listen(engine, "do_connect", lambda dialect, _rec, cargs, cparams:
                     _as_driver_error(dialect.connect)(*cargs, **cparams))
    event.listen(engine, "handle_error", _socket_error_is_a_disconnect)
    _set_up_connections(engine, Timeouts.of(settings))
    _ping_on_checkout(engine)
    return engine


def _socket_error_is_a_disconnect(context):
    """A read that timed out (or any socket error) mid-statement leaves pg8000's connection
    unusable but escapes as a bare OSError: tell SQLAlchemy to drop the connection, and raise
    it as the OperationalError callers already handle."""
    error = context.original_exception
    if isinstance(error, OSError):
        context.is_disconnect = True
        return OperationalError(context.statement, context.parameters,
                                pg8000.dbapi.InterfaceError(f"database connection lost: {error!r}"),
                                connection_invalidated=True)
    return None


def _as_driver_error(connect):
    """pg8000 lets a connect's socket timeout or refusal escape as a bare OSError; as the
    driver's own error SQLAlchemy reports it like any other lost connection (a DBAPIError)."""

    def connect_or_driver_error(*args, **kwargs):
        try:
            return connect(*args, **kwargs)
        except OSError as error:
            raise pg8000.dbapi.InterfaceError(f"could not connect to the database: {error!r}") from error

    return connect_or_driver_error


@dataclass(frozen=True)
class Timeouts:
    connect: float
    statement: float
    keepalive: int

    @classmethod
    def of(cls, settings: Settings) -> Timeouts:
        return cls(settings.db_connect_timeout_seconds, settings.db_statement_timeout_seconds,
                   settings.db_keepalive_seconds)

    @property
    def read(self) -> float:
        # The server cancels a statement at `statement`; an answer later than that plus a
        # connect's worth of slack means the server itself is not answering.
        return self.statement + self.connect


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

    # The connector's own timeout bounds the whole connect (certificate refresh included).
    connector = Connector(timeout=max(settings.db_connect_timeout_seconds, 10))

    def connect():
        return connector.connect(
            settings.cloud_sql_connection_name,
            "pg8000",
            user=settings.database_user,
            password=settings.database_password.get_secret_value(),
            db=settings.database_name,
        )

    engine = create_engine("postgresql+pg8000://", creator=_as_driver_error(connect), **pool)
    # The connector owns a background refresh thread; close it with the engine.
    event.listen(engine, "engine_disposed", lambda _engine: connector.close())
    return engine


def _set_up_connections(engine: Engine, timeouts: Timeouts) -> None:
    """Every new connection talks UTC, sends without delay, and cannot wait forever."""
    settings_sql = ("SELECT set_config('TimeZone', 'UTC', false), "
                    f"set_config('statement_timeout', '{int(timeouts.statement * 1000)}', false)")

    @event.listens_for(engine, "connect")
    def _set_up(dbapi_connection, _record):
        sock = getattr(dbapi_connection, "_usock", None)  # pg8000 keeps the socket here
        if sock is None:
            logger.warning("cannot reach the database connection's socket to set its options")
        else:
            _no_delay(sock)
            _keepalive(sock, timeouts.keepalive)
            sock.settimeout(timeouts.connect)
        _run_alone(dbapi_connection, settings_sql)  # session settings, one round trip
        if sock is not None:
            sock.settimeout(timeouts.read)
        dbapi_connection.telepay_timeouts = timeouts  # the checkout check reads it


def _keepalive(sock: socket.socket, idle: int) -> None:
    """Probe an idle TCP connection after `idle` seconds, then every idle/3, give up after 3.

    The kernel's default waits two hours before the first probe: a connection whose server
    vanished (a failover, a dropped NAT entry) would look alive to the pool all that time.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", max(1, idle // 3)), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _no_delay(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm on a TCP connection to the server.

    pg8000 writes through an 8 KiB buffer and leaves the socket as the OS made it. A message
    longer than the buffer (a batch of IPNs is one) goes out as a full segment and a short one;
    Nagle holds the short one until the first is acknowledged, and the server delays that
    acknowledgement by up to 40 ms. Measured: a batch of 8 IPNs took 44 ms instead of 1 ms.
    libpq sets TCP_NODELAY for the same reason. A unix socket has no such delay.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
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
    """One round trip that proves the connection alive and leaves no transaction open.

    The answer is awaited only for the connect timeout: a server that stopped answering is
    found in seconds, not after the longer read timeout real statements get.
    """
    timeouts = getattr(dbapi_connection, "telepay_timeouts", None)
    sock = getattr(dbapi_connection, "_usock", None)
    if timeouts is None or sock is None:
        _run_alone(dbapi_connection, "SELECT 1")
        return
    sock.settimeout(timeouts.connect)
    try:
        _run_alone(dbapi_connection, "SELECT 1")
    finally:
        sock.settimeout(timeouts.read)


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
