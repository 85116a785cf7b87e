"""`telepay payouts reconcile` after a restore: the database is put back to a backup taken before
an effect (its payout rows, transfers and jobs copied, then written back), while the chain and
ChangeNOW keep what happened. Reconcile must find the difference, `--apply` must record the
truth without sending anything, the worker must then never pay again (counted on the chain),
and a second run must change nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, select, update

from eth_account import Account

from telepay.cli import main
from telepay.models import Base, ChainTxStatus, Payout, PayoutStatus
from telepay.services.payouts.reconcile import PayoutReconciler, Verdict
from telepay_sandbox.chain import HOST_WALLET_PRIVATE_KEY
from tests.services.payouts.conftest import KEY, Crash

TABLES = ("chain_tx_attempts", "chain_transactions", "jobs")


def _backup(world) -> dict[str, list[dict]]:
    with world.session_factory() as session:
        snapshot = {name: [dict(row._mapping) for row in session.execute(select(Base.metadata.tables[name]))]
                    for name in (*TABLES, "payouts")}
    return snapshot


def _restore(world, snapshot) -> None:
    """Write the backup's rows back: later transfers and jobs vanish, payouts go back in time."""
    with world.session_factory.begin() as session:
        known = {row["id"] for row in snapshot["payouts"]}
        assert set(session.scalars(select(Payout.id))) == known  # no payout was made after the backup
        for name in TABLES:
            session.execute(delete(Base.metadata.tables[name]))
        for row in snapshot["payouts"]:
            session.execute(update(Base.metadata.tables["payouts"]).where(
                Base.metadata.tables["payouts"].c.id == row["id"]).values(**row))
        for name in reversed(TABLES):
            if snapshot[name]:
                session.execute(insert(Base.metadata.tables[name]), snapshot[name])


def _reconciler(world) -> PayoutReconciler:
    return PayoutReconciler(world.session_factory, world.jobs, world.runner, world.clock)


def _cli(world, database_url, *args):
    env = {"DATABASE_URL": database_url, "CHANGENOW_API_KEY": KEY, "CHANGENOW_BASE_URL": world.changenow.base_url,
           **world.chain.env()}
    return CliRunner(env=env).invoke(main, ["payouts", "reconcile", *args])


def _settled_before(world) -> None:
    """A payout paid before the backup, so the backup records the wallet's nonces up to it."""
    world.pay(world.channel("eth", "eth"), Decimal("30"))
    world.drain()


@pytest.mark.parametrize("backup_at", ["queued", "signed"])
def test_a_direct_transfer_mined_after_the_backup_is_recorded_and_never_sent_again(
        world, database_url, tmp_path, monkeypatch, backup_at):
    monkeypatch.chdir(tmp_path)  # no developer .env
    _settled_before(world)
    channel = world.channel("eth", "eth")
    payout = world.payout_of(world.pay(channel, Decimal("40")))
    if backup_at == "signed":
        world.crasher.armed.add("after_sign")
        with pytest.raises(Crash):
            world.runner.run(payout.id)
        assert [t.status for t in world.chain_txs(payout.id)] == [ChainTxStatus.SIGNED]
    backup = _backup(world)
    world.drain()
    [sent] = world.host_transfers(channel.payout_address, "eth")
    _restore(world, backup)
    assert world.payout(payout.id).status == (PayoutStatus.PENDING if backup_at == "queued" else PayoutStatus.FUNDING)

    looked = _cli(world, database_url)
    assert looked.exit_code == 1, looked.output
    assert f"payout {payout.id}" in looked.output and "verdict  fix" in looked.output
    assert "true     finished" in looked.output and "run `telepay payouts reconcile --apply`" in looked.output
    assert world.payout(payout.id).status != PayoutStatus.FINISHED  # looking changes nothing

    applied = _cli(world, database_url, "--apply")
    assert applied.exit_code == 1 and "-> finished" in applied.output, applied.output
    fixed = world.payout(payout.id)
    assert fixed.status == PayoutStatus.FINISHED and fixed.payout_hash == sent.tx_hash
    assert [t.tx_hash for t in world.chain_txs(payout.id)] == [sent.tx_hash]

    world.drain()  # the restored job runs: it must find nothing to send
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1
    before = _backup(world)
    again = _cli(world, database_url, "--apply")
    assert again.exit_code == 0, again.output
    assert _backup(world) == before  # the second run changed nothing


@pytest.mark.parametrize("backup_at", ["funded", "requested"])
def test_b_an_exchange_finished_after_the_backup_is_recorded_finished(world, backup_at):
    _settled_before(world)
    channel = world.channel("usdt", "eth")
    payout = world.payout_of(world.pay(channel, Decimal("60")))
    if backup_at == "requested":  # the backup knows the intent, not the exchange nor the transfer
        world.crasher.armed.add("after_exchange_created")
        with pytest.raises(Crash):
            world.runner.run(payout.id)
    else:  # the backup has the transfer mined and the exchange waiting for it
        assert world.runner.run(payout.id) == PayoutStatus.FUNDED
    backup = _backup(world)
    world.drain()
    done = world.payout(payout.id)
    assert done.status == PayoutStatus.FINISHED
    _restore(world, backup)
    recorded = world.payout(payout.id)
    assert recorded.status == PayoutStatus(
        "exchange_requested" if backup_at == "requested" else "funded") and recorded.payout_hash is None

    reconciler = _reconciler(world)
    [finding] = [f for f in reconciler.survey() if f.payout_id == payout.id]
    assert finding.verdict == Verdict.FIX and finding.truth == "finished", finding
    assert "finished" in finding.world
    reconciler.apply([finding])
    fixed = world.payout(payout.id)
    assert fixed.status == PayoutStatus.FINISHED, fixed.last_error
    assert (fixed.exchange_id, fixed.payout_hash) == (done.exchange_id, done.payout_hash)

    world.drain()
    assert len(world.host_transfers(done.payin_address, "eth")) == 1
    before = _backup(world)
    assert all(f.verdict == Verdict.CONSISTENT for f in reconciler.survey())
    reconciler.apply(reconciler.survey())
    assert _backup(world) == before


def test_c_a_consistent_set_exits_0_and_changes_nothing(world, database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _settled_before(world)
    carried = world.payout_of(world.pay(world.channel("btc", "btc"), Decimal("5")))  # below ChangeNOW's minimum
    world.drain()
    waiting = world.payout_of(world.pay(world.channel("usdt", "eth"), Decimal("60")))
    assert world.runner.run(waiting.id) == PayoutStatus.FUNDED  # exchange waits for the deposit
    queued = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("40")))  # not run yet
    assert world.payout(carried.id).status == PayoutStatus.CARRIED_OVER
    before = _backup(world)

    looked = _cli(world, database_url, "--apply")
    assert looked.exit_code == 0, looked.output
    assert "3 finding(s): 3 consistent, 0 to fix, 0 to review, 0 need an operator" in looked.output
    for payout in (carried, waiting, queued):
        assert f"payout {payout.id}" in looked.output
    assert _backup(world) == before


def test_a_transfer_no_payout_explains_needs_an_operator(world):
    """A transfer after the backup to an address no payout in flight pays (its payout was made
    after the backup too): reconcile cannot fix it and says so, every run, changing nothing."""
    _settled_before(world)
    stranger = world.chain.new_account().address
    world.chain.send_eth(Account.from_key(HOST_WALLET_PRIVATE_KEY), stranger, Decimal("0.001"))
    reconciler = _reconciler(world)
    before = _backup(world)
    for _ in range(2):
        findings = reconciler.survey()
        [wallet] = [f for f in findings if f.payout_id is None]
        assert wallet.verdict == Verdict.ATTENTION and stranger in wallet.world and wallet.fix is None
        reconciler.apply(findings)
    assert _backup(world) == before


def test_control_without_reconcile_the_restored_worker_pays_again(world):
    """Why reconcile exists: the same restore, then the worker alone sends the payout twice."""
    _settled_before(world)
    channel = world.channel("eth", "eth")
    world.pay(channel, Decimal("40"))
    backup = _backup(world)
    world.drain()
    _restore(world, backup)
    world.drain()
    assert len(world.host_transfers(channel.payout_address, "eth")) == 2
