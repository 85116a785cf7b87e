"""`telepay backup` and `telepay restore` round trip: data in (payments, a paid-out and a
carried-over payout), backup online, restore into an empty database, `telepay report` identical."""

from __future__ import annotations

import uuid
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from telepay.cli import main


def test_backup_and_restore_give_an_identical_report(world, database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no developer .env
    world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("30")))
    world.drain()
    world.payout_of(world.pay(world.channel("btc", "btc"), Decimal("5")))
    world.drain()
    source = CliRunner(env={"DATABASE_URL": database_url})
    before = source.invoke(main, ["report", "--exact"])
    assert before.exit_code == 0 and "27.000000" in before.output, before.output

    dump = tmp_path / "telepay.dump"
    made = source.invoke(main, ["backup", str(dump)])
    assert made.exit_code == 0 and dump.stat().st_size > 0, made.output

    url = make_url(database_url)
    empty = url.set(database=f"{url.database}_restored_{uuid.uuid4().hex[:6]}")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{empty.database}"'))
    try:
        target = CliRunner(env={"DATABASE_URL": empty.render_as_string(hide_password=False)})
        restored = target.invoke(main, ["restore", str(dump), "--yes"])
        assert restored.exit_code == 0, restored.output
        after = target.invoke(main, ["report", "--exact"])
        assert after.exit_code == 0, after.output
        assert after.output == before.output
        current = target.invoke(main, ["db", "current"])
        assert current.output.split()[1].rstrip(";") == current.output.split()[-1]  # schema at head too
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{empty.database}" WITH (FORCE)'))
        admin.dispose()
