"""`telepay payouts reconcile` after a restore: the database is put back to a backup taken before
an effect (its payout rows, transfers and jobs copied, then written back), while the chain and
ChangeNOW keep what happened. Reconcile must find the difference, `--apply` must record the
truth without sending anything, the worker must then never pay again (counted on the chain),
and a second run must change nothing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, select, text, update

from eth_account import Account

from telepay.cli import main
from telepay.models import Base, ChainTxStatus, Payout, PayoutStatus
from telepay.services.payouts.reconcile import PayoutReconciler, Verdict
from telepay_sandbox.chain import HOST_WALLET_PRIVATE_KEY
from tests.services.payouts.conftest import KEY, Crash
from tests.services.payouts.test_chain_realities import _stuck_payout, _until_finished

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
    unsent = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("50")))
    world.crasher.armed.add("after_sign")  # signed and stored, never broadcast: the runner sends it
    with pytest.raises(Crash):
        world.runner.run(unsent.id)
    queued = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("40")))  # not run yet
    assert world.payout(carried.id).status == PayoutStatus.CARRIED_OVER
    before = _backup(world)

    looked = _cli(world, database_url, "--apply")
    assert looked.exit_code == 0, looked.output
    assert "4 finding(s): 4 consistent, 0 to fix, 0 to review, 0 need an operator" in looked.output
    assert "re-broadcasts these same bytes" in looked.output
    for payout in (carried, waiting, unsent, queued):
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


@pytest.fixture
def held(chain):
    yield chain
    chain.release()


def test_a_replacement_the_backup_lacks_is_recognised_as_the_transfer(world, held):
    """The backup holds the first version of a stuck transfer; a higher-fee replacement (same
    nonce) was mined after it. Without reconcile the runner would call the transfer displaced."""
    _settled_before(world)
    channel, payout, _ = _stuck_payout(world, held, floor_bumps=1)
    [first] = world.chain_txs(payout.id)
    backup = _backup(world)
    _until_finished(world, payout.id)
    [sent] = world.host_transfers(channel.payout_address, "eth")
    assert sent.tx_hash != first.tx_hash
    _restore(world, backup)

    reconciler = _reconciler(world)
    [finding] = reconciler.survey()
    assert finding.verdict == Verdict.FIX and "a version the records lost was mined" in finding.world, finding
    reconciler.apply([finding])
    fixed = world.payout(payout.id)
    assert fixed.status == PayoutStatus.FINISHED and fixed.payout_hash == sent.tx_hash, fixed.last_error
    world.drain()
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1
    assert reconciler.survey() == []


def test_a_deposit_no_transfer_explains_goes_to_review(world):
    """ChangeNOW shows the exchange funded and finished, but no transfer of the host wallet that
    reconcile looks at explains it (the operator said older nonces are known): ambiguous, so
    --apply parks the payout in needs_review with the reason, and a second run changes nothing."""
    _settled_before(world)
    payout = world.payout_of(world.pay(world.channel("usdt", "eth"), Decimal("60")))
    world.crasher.armed.add("after_exchange_created")
    with pytest.raises(Crash):
        world.runner.run(payout.id)
    backup = _backup(world)
    world.drain()
    _restore(world, backup)

    reconciler = PayoutReconciler(world.session_factory, world.jobs, world.runner, world.clock,
                                  from_nonce=world.chain.nonce(world.wallet.address))
    [finding] = reconciler.survey()
    assert finding.verdict == Verdict.REVIEW and "no transfer of the host wallet explains" in finding.world
    reconciler.apply([finding])
    parked = world.payout(payout.id)
    assert parked.status == PayoutStatus.NEEDS_REVIEW and parked.last_error.startswith("reconcile: ChangeNOW")
    assert any(f"Payout {payout.id}" in text and "needs review" in text for text in world.alerts())
    before = _backup(world)
    [again] = reconciler.survey()
    assert again.verdict == Verdict.ATTENTION and again.fix is None
    assert _backup(world) == before


def test_lost_transfers_two_payouts_could_own_go_to_review(world):
    """Two instant payouts to one owner's address, both paid after the backup: which transfer is
    whose cannot be told, so both are parked for an operator; nothing is sent again."""
    _settled_before(world)
    channel = world.channel("eth", "eth")
    first, second = (world.payout_of(world.pay(channel, Decimal(usd))) for usd in ("40", "45"))
    backup = _backup(world)
    world.drain()
    _restore(world, backup)

    reconciler = _reconciler(world)
    findings = reconciler.survey()
    assert [(f.payout_id, f.verdict) for f in findings] == [(first.id, Verdict.REVIEW), (second.id, Verdict.REVIEW)]
    assert "all pay there" in findings[0].world
    reconciler.apply(findings)
    assert {world.payout(p.id).status for p in (first, second)} == {PayoutStatus.NEEDS_REVIEW}
    world.drain()
    assert len(world.host_transfers(channel.payout_address, "eth")) == 2


def test_without_the_payout_settings_it_exits_2_naming_them(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner(env={"DATABASE_URL": database_url}).invoke(main, ["payouts", "reconcile"])
    assert result.exit_code == 2 and "CHANGENOW_API_KEY, ETH_RPC_URL" in result.output


def test_changenow_down_leaves_the_payout_as_it_is_and_says_so(world):
    _settled_before(world)
    payout = world.payout_of(world.pay(world.channel("usdt", "eth"), Decimal("60")))
    assert world.runner.run(payout.id) == PayoutStatus.FUNDED
    backup = _backup(world)
    world.drain()
    _restore(world, backup)

    reconciler = _reconciler(world)
    world.changenow.fail_next("/v2/exchange", status=503, count=2)  # the client's try and its one retry
    [finding] = reconciler.survey()
    assert finding.verdict == Verdict.ATTENTION and "503" in finding.world, finding
    reconciler.apply([finding])
    assert world.payout(payout.id).status == PayoutStatus.FUNDED
    [finding] = reconciler.survey()
    assert finding.verdict == Verdict.FIX and finding.truth == "finished"


MONEY_TABLES = ("invoices", "payments", "payouts", "accumulations", *TABLES)


def _backup_all(world) -> dict[str, list[dict]]:
    with world.session_factory() as session:
        return {name: [dict(row._mapping) for row in session.execute(select(Base.metadata.tables[name]))]
                for name in MONEY_TABLES}


def _restore_all(world, snapshot) -> None:
    """A whole restore of the money tables: rows made after the backup are gone."""
    with world.session_factory.begin() as session:
        session.execute(text("SET LOCAL session_replication_role = replica"))  # as pg_restore: no FK order
        for name in MONEY_TABLES:
            session.execute(delete(Base.metadata.tables[name]))
        for name in MONEY_TABLES:
            if snapshot[name]:
                session.execute(insert(Base.metadata.tables[name]), snapshot[name])


def test_a_payout_made_again_after_the_restore_is_matched_through_its_paid_exchange(world):
    """The backup predates the payment: the payment is re-learned after the restore and its payout
    made again, younger than the exchange the first one funded. The lost transfer leads to that
    exchange, whose payout address names the new payout: it is recorded, never paid again."""
    _settled_before(world)
    channel = world.channel("usdt", "eth")
    backup = _backup_all(world)
    first = world.payout_of(world.pay(channel, Decimal("60")))
    world.drain()
    first = world.payout(first.id)
    assert first.status == PayoutStatus.FINISHED
    _restore_all(world, backup)
    world.clock.advance(timedelta(hours=1))  # the payment is re-learned later
    again = world.payout_of(world.pay(channel, Decimal("60")))

    reconciler = _reconciler(world)
    [finding] = reconciler.survey()
    assert (finding.payout_id, finding.verdict, finding.truth) == (again.id, Verdict.FIX, "finished"), finding
    reconciler.apply([finding])
    fixed = world.payout(again.id)
    assert fixed.status == PayoutStatus.FINISHED and fixed.exchange_id == first.exchange_id, fixed.last_error
    world.drain()
    assert len(world.host_transfers(first.payin_address, "eth")) == 1
    assert reconciler.survey() == []


def test_a_lost_transfer_of_another_amount_to_the_owner_goes_to_review(world):
    """A transfer after the backup reached the owner's address, but it is worth far more than the
    pending payout (another payout's, made after the backup): not adopted, parked for review."""
    _settled_before(world)
    channel = world.channel("eth", "eth")
    payout = world.payout_of(world.pay(channel, Decimal("40")))
    world.chain.send_eth(Account.from_key(HOST_WALLET_PRIVATE_KEY), channel.payout_address, Decimal("0.5"))

    reconciler = _reconciler(world)
    [finding] = reconciler.survey()
    assert finding.verdict == Verdict.REVIEW and "USD now and the payout is 36" in finding.truth, finding
    reconciler.apply([finding])
    assert world.payout(payout.id).status == PayoutStatus.NEEDS_REVIEW
    assert world.chain_txs(payout.id) == []
