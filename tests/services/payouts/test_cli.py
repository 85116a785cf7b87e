"""`telepay payouts ...` and `telepay report` against a database with real payouts in it."""

from __future__ import annotations

from decimal import Decimal

from click.testing import CliRunner

from telepay.cli import main
from telepay.models import PayoutStatus


def test_operators_list_show_retry_cancel_and_report(world, database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no developer .env
    runner = CliRunner(env={"DATABASE_URL": database_url})
    paid = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("30")))
    world.drain()
    carried = world.payout_of(world.pay(world.channel("btc", "btc"), Decimal("5")))
    world.drain()
    assert world.payout(carried.id).status == PayoutStatus.CARRIED_OVER

    listing = runner.invoke(main, ["payouts", "list"])
    assert listing.exit_code == 0 and "finished" in listing.output and "carried_over" in listing.output
    shown = runner.invoke(main, ["payouts", "show", str(paid.id)])
    assert shown.exit_code == 0 and "transfer         ETH" in shown.output and "confirmed" in shown.output
    [stored] = world.chain_txs(paid.id)
    assert f"signed version {stored.tx_hash}" in shown.output and "maxFeePerGas=" in shown.output

    exact = runner.invoke(main, ["report", "--exact"])
    assert exact.exit_code == 0, exact.output
    assert "27.000000" in exact.output and "4.500000" in exact.output  # paid out; carried over

    refused = runner.invoke(main, ["payouts", "cancel", str(paid.id), "--reason", "late"])
    assert refused.exit_code == 1 and "cannot be cancelled" in refused.output
    assert runner.invoke(main, ["payouts", "cancel", str(carried.id), "--reason", "owner asked"]).exit_code == 0
    assert runner.invoke(main, ["payouts", "retry", str(carried.id)]).exit_code == 1
    assert world.payout(carried.id).status == PayoutStatus.CANCELLED
