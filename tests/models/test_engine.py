"""The engine factory's three modes."""

from __future__ import annotations

import socket
import sys
import types
from datetime import datetime, timezone

import pg8000
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from telepay.api.schemas import IpnIn
from telepay.config import ConfigError
from telepay.config_load import load_settings
from telepay.errors import NotFound
from telepay.models.engine import make_engine, normalise_url
from telepay.services.ipn import IpnDelivery, record_ipns_committed


def test_plain_postgres_urls_get_the_pg8000_driver():
    assert normalise_url("postgresql://u:p@h:5432/db").startswith("postgresql+pg8000://u:p@h:5432/db")
    with pytest.raises(ConfigError):
        normalise_url("sqlite:///x.db")


def test_database_url_mode_with_pool_settings(database_url):
    engine = make_engine(load_settings({"DATABASE_URL": database_url, "DB_POOL_SIZE": "3",
                                        "DB_MAX_OVERFLOW": "2"}, env_file=None))
    with engine.connect() as connection:
        assert connection.execute(text("SHOW TIME ZONE")).scalar() == "UTC"
    assert engine.pool.size() == 3 and engine.pool._max_overflow == 2
    engine.dispose()


def test_a_dead_connection_is_replaced_when_it_is_handed_out(database_url):
    engine = make_engine(load_settings({"DATABASE_URL": database_url, "DB_POOL_SIZE": "1",
                                        "DB_MAX_OVERFLOW": "0"}, env_file=None))
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        with create_engine(database_url).connect() as admin:  # the server drops it, as a failover would
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with engine.connect() as connection:
            # The check leaves no transaction open, so a statement sent next can run on its own.
            assert connection.connection.driver_connection._in_transaction is False
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        engine.dispose()


def test_cloud_sql_mode_connects_through_the_connector(database_url, monkeypatch):
    """The connector is replaced by one that opens a pg8000 connection to the test server,
    the way the real one opens it to Cloud SQL: the engine's creator path is what is tested.
    The test server may be reached over TCP or, embedded, over its unix socket."""
    url = make_url(database_url)
    where = ({"unix_sock": url.query["unix_sock"]} if "unix_sock" in url.query
             else {"host": url.host, "port": url.port or 5432})
    calls = []

    class FakeConnector:
        def __init__(self, **kwargs):
            calls.append(("timeout", kwargs.get("timeout")))

        def connect(self, instance, driver, **kwargs):
            calls.append((instance, driver, kwargs["db"], kwargs["user"]))
            return pg8000.dbapi.connect(user=url.username or "postgres", database=url.database,
                                        password=url.password, **where)

        def close(self):
            calls.append("closed")

    fake = types.ModuleType("google.cloud.sql.connector")
    fake.Connector = FakeConnector
    monkeypatch.setitem(sys.modules, "google.cloud.sql.connector", fake)
    engine = make_engine(load_settings({"CLOUD_SQL_CONNECTION_NAME": "proj:region:inst", "DATABASE_NAME": "telepay",
                                        "DATABASE_USER": "svc", "DATABASE_PASSWORD": "pw"}, env_file=None))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    # The IPN path drives the driver's prepared statements directly: the connector's kind of
    # pg8000 connection must take them too.
    body = {"payment_id": 1, "payment_status": "waiting", "order_id": "no-such-order"}
    with engine.connect() as connection:
        [outcome] = record_ipns_committed(connection, [IpnDelivery(IpnIn.model_validate(body), body, "{}")],
                                          datetime.now(timezone.utc))
    assert isinstance(outcome, NotFound)
    engine.dispose()
    assert calls[0] == ("timeout", 10)  # the connect is bounded in this mode too
    assert calls[1] == ("proj:region:inst", "pg8000", "telepay", "svc") and calls[-1] == "closed"


def test_cloud_sql_mode_names_what_is_missing():
    with pytest.raises(ConfigError) as caught:
        make_engine(load_settings({"CLOUD_SQL_CONNECTION_NAME": "p:r:i"}, env_file=None))
    assert caught.value.names == ["DATABASE_NAME", "DATABASE_USER", "DATABASE_PASSWORD"]


def test_tcp_connections_send_without_delay(database_url):
    engine = make_engine(load_settings({"DATABASE_URL": database_url}, env_file=None))
    try:
        with engine.connect() as connection:
            sock = connection.connection.driver_connection._usock
            if sock.family == socket.AF_UNIX:
                pytest.skip("the embedded server is reached over a unix socket: no Nagle delay there")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        engine.dispose()
