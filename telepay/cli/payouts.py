"""`telepay payouts list|show|retry|cancel|reconcile` and `telepay report`: the operator's view of
money out.

Registered on the main group by `telepay.cli`. Every command but `reconcile` talks to the
database only (reconcile also asks the chain and ChangeNOW); a retried payout is picked up by
the running process's worker.
"""

from __future__ import annotations

import sys
from decimal import Decimal

import click

from telepay.cli.common import session_factory as _session_factory
from telepay.models import PayoutStatus


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


@click.group()
def payouts() -> None:
    """Payouts to owners and host sweeps: list, show, retry, cancel, reconcile."""


@payouts.command("list")
@click.option("--status", type=click.Choice([s.value for s in PayoutStatus]))
@click.option("--channel", "channel_id", type=int)
@click.option("--limit", default=50, show_default=True)
def payouts_list(status: str | None, channel_id: int | None, limit: int) -> None:
    """Recent payouts, newest first."""
    from telepay.services.payouts.operations import list_payouts

    with _session_factory()() as session:
        for p in list_payouts(session, PayoutStatus(status) if status else None, channel_id, limit):
            error = (p.last_error or "").splitlines()[0][:60] if p.last_error else ""
            click.echo(f"{p.id:>7} {p.kind.value:8} {p.status.value:18} channel={p.channel_id or '-':<6} "
                       f"{_usd(p.amount_usd):>12} USD -> {p.to_currency}/{p.to_network} "
                       f"{p.created_at:%Y-%m-%d %H:%M} {error}")


@payouts.command("show")
@click.argument("payout_id", type=int)
def payouts_show(payout_id: int) -> None:
    """One payout: amounts, exchange, transfer, the payments it pays."""
    from telepay.services.payouts.operations import show_payout

    with _session_factory()() as session:
        try:
            view = show_payout(session, payout_id)
        except LookupError as error:
            raise click.ClickException(str(error))
        p = view["payout"]
        for name in ("id", "kind", "status", "channel_id", "amount_usd", "funding_asset", "from_amount",
                     "to_currency", "to_network", "to_address", "to_amount", "exchange_id", "payin_address",
                     "payout_hash", "merged_into_id", "resume_status", "failing_since", "last_error", "created_at",
                     "finished_at"):
            value = getattr(p, name)
            click.echo(f"{name:16} {getattr(value, 'value', value) if value is not None else '-'}")
        for tx in view["transactions"]:
            click.echo(f"transfer         {tx.asset} {tx.amount_base_units} base units to {tx.to_address} "
                       f"nonce={tx.nonce} {tx.status.value} {tx.tx_hash}")
        for attempt in view["attempts"]:
            click.echo(f"  signed version {attempt.tx_hash} at {attempt.created_at:%Y-%m-%d %H:%M:%S} "
                       f"maxFeePerGas={attempt.max_fee_per_gas} maxPriorityFeePerGas="
                       f"{attempt.max_priority_fee_per_gas} gas={attempt.gas}")
        for payment in view["payments"]:
            click.echo(f"payment          {payment.id} ({payment.provider_payment_id}): share "
                       f"{payment.owner_share_usd} USD, fee {payment.platform_fee_usd} USD")
        if view["swept_shares"]:
            click.echo(f"swept shares     {len(view['swept_shares'])}")


@payouts.command("retry")
@click.argument("payout_id", type=int)
def payouts_retry(payout_id: int) -> None:
    """Resume a payout in needs_review, or quote a carried-over one again."""
    from telepay.clock import SystemClock
    from telepay.services.jobs import JobQueue
    from telepay.services.payouts.operations import PayoutRefused, retry_payout

    factory = _session_factory()
    try:
        status = retry_payout(factory, JobQueue(factory), payout_id, SystemClock().now())
    except (LookupError, PayoutRefused) as error:
        raise click.ClickException(str(error))
    click.echo(f"payout {payout_id} queued from {status.value}")


@payouts.command("cancel")
@click.argument("payout_id", type=int)
@click.option("--reason", required=True, help="Why; kept on the payout.")
def payouts_cancel(payout_id: int, reason: str) -> None:
    """Cancel a payout the host wallet has not funded (a batch's shares are held again)."""
    from telepay.clock import SystemClock
    from telepay.services.payouts.operations import PayoutRefused, cancel_payout

    try:
        cancel_payout(_session_factory(), payout_id, SystemClock().now(), reason)
    except (LookupError, PayoutRefused) as error:
        raise click.ClickException(str(error))
    click.echo(f"payout {payout_id} cancelled")


@payouts.command("reconcile")
@click.option("--apply", "apply_", is_flag=True, help="Put each payout into its true state (never sends money).")
@click.option("--from-nonce", type=int, help="Look for unrecorded host-wallet transfers from this nonce on "
              "(default: after the newest recorded one).")
def payouts_reconcile(apply_: bool, from_nonce: int | None) -> None:
    """After a database restore: every payout in flight against the chain and ChangeNOW. Exit 0 when
    all are consistent, 1 when anything needed fixing or needs an operator."""
    from telepay.cli.common import engine_or_exit, settings_or_exit
    from telepay.clients.changenow import ChangeNowClient
    from telepay.clock import SystemClock
    from telepay.models.engine import make_session_factory
    from telepay.services.jobs import JobQueue
    from telepay.services.payouts.reconcile import PayoutReconciler, Verdict
    from telepay.services.registry import JOB_KINDS
    from telepay.wiring import payout_engine

    settings = settings_or_exit()
    engine = engine_or_exit(settings)
    factory, clock = make_session_factory(engine), SystemClock()
    jobs = JobQueue(factory, clock=clock, kinds=JOB_KINDS)
    changenow = (ChangeNowClient(settings.changenow_base_url, settings.changenow_api_key.get_secret_value())
                 if settings.changenow_api_key else None)
    try:
        payouts = payout_engine(settings, factory, jobs, clock, changenow)
        if payouts is None:
            click.echo("telepay: payouts reconcile needs CHANGENOW_API_KEY, ETH_RPC_URL, HOST_WALLET_PRIVATE_KEY and "
                       "USDT_CONTRACT_ADDRESS", err=True)
            sys.exit(2)
        reconciler = PayoutReconciler(factory, jobs, payouts.runner, clock, from_nonce=from_nonce)
        try:
            findings = reconciler.survey()
        except Exception as error:  # noqa: BLE001 - the chain unreachable: nothing can be compared
            click.echo(f"telepay: cannot compare with the chain: {type(error).__name__}: {error}", err=True)
            sys.exit(1)
        for f in findings:
            click.echo(f"payout {f.payout_id}" if f.payout_id is not None else "host wallet")
            click.echo(f"  records  {f.recorded}")
            click.echo(f"  world    {f.world}")
            click.echo(f"  true     {f.truth}")
            click.echo(f"  verdict  {f.verdict.value}")
        done = reconciler.apply(findings) if apply_ else []
    finally:
        if changenow is not None:
            changenow.close()
        engine.dispose()
    for line in done:
        click.echo(f"applied  {line}")
    counts = {v: sum(f.verdict == v for f in findings) for v in Verdict}
    fixable = counts[Verdict.FIX] + counts[Verdict.REVIEW]
    click.echo(f"{len(findings)} finding(s): {counts[Verdict.CONSISTENT]} consistent, {counts[Verdict.FIX]} to fix, "
               f"{counts[Verdict.REVIEW]} to review, {counts[Verdict.ATTENTION]} need an operator")
    if fixable and not apply_:
        click.echo("nothing was changed: run `telepay payouts reconcile --apply` to put them in their true state")
    if counts[Verdict.ATTENTION]:
        click.echo("an operator must look at the findings marked attention before payouts resume")
    sys.exit(0 if fixable + counts[Verdict.ATTENTION] == 0 else 1)


@click.command()
@click.option("--exact", is_flag=True, help="Every digit (shares are kept to the micro-dollar), not cents.")
def report(exact: bool) -> None:
    """Per channel, in USD: received, platform fees, paid out, pending, carried over, cancelled;
    then Telegram Stars: received, their USD value, held, released, refunded."""
    from telepay.cli.stars import print_stars_report
    from telepay.services.payouts.operations import report as money_report

    _usd = str if exact else globals()["_usd"]

    with _session_factory()() as session:
        rows = money_report(session)
    header = ("channel", "payments", "received", "fees", "paid out", "pending", "carried over", "cancelled")
    click.echo("{:>8} {:>9} {:>14} {:>12} {:>14} {:>12} {:>13} {:>10}".format(*header))
    totals = [Decimal(0)] * 6
    for m in rows:
        amounts = (m.received, m.fees, m.paid_out, m.pending, m.carried_over, m.cancelled)
        totals = [t + a for t, a in zip(totals, amounts)]
        click.echo("{:>8} {:>9} {:>14} {:>12} {:>14} {:>12} {:>13} {:>10}".format(
            m.channel_id, m.payments, *(_usd(a) for a in amounts)))
    click.echo("{:>8} {:>9} {:>14} {:>12} {:>14} {:>12} {:>13} {:>10}".format(
        "total", sum(m.payments for m in rows), *(_usd(t) for t in totals)))
    with _session_factory()() as session:
        print_stars_report(session, exact)
