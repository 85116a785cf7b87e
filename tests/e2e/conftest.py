"""Fixtures shared by the end-to-end fault tests: the sandbox Telegram and NOWPayments, the
loopback alert webhook, a scratch PostgreSQL that may be frozen, and a shop to sell through."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from telepay.models import migrate
from telepay.models.engine import embedded_url
from telepay_sandbox.database import empty_tables
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from tests.e2e.faults import BOT, NOWPAYMENTS_KEY, TOKEN, Receiver, Shop


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


@pytest.fixture
def telegram():
    with TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()) as sandbox:
        yield sandbox


@pytest.fixture
def nowpayments():
    with NowPaymentsSandbox(NOWPAYMENTS_KEY, "sandbox-nowpayments-ipn-secret") as sandbox:
        yield sandbox


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def make_shop(telegram, nowpayments, receiver, tmp_path):
    """make_shop(database_url, **settings): a Shop (not started); killed and its rows emptied after."""
    made: list[Shop] = []

    def make(database_url: str, **env: str) -> Shop:
        made.append(Shop(telegram, nowpayments, receiver, tmp_path, database_url=database_url, **env))
        return made[-1]

    yield make
    for shop in made:
        shop.process.kill()
        empty_tables(shop.engine)
        shop.engine.dispose()
