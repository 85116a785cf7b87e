"""`telepay payments reconcile|list|show|resolve`: lost IPNs recovered; payments looked at and settled.

Registered on the main group by `telepay.cli`; `telepay payments refund` (Stars) joins this group
from `telepay.cli.stars`. `reconcile` does what the running process's reconciliation
timer does (`telepay.services.payments.reconcile`), by hand and over a window the operator
chooses: each recovered payment is recorded as its IPN would have been, and the running
process's worker processes it (fulfils, pays out) as usual. `list`, `show` and `resolve` are the
operator's view of payments and the way to settle one in review
(`telepay.services.payments.operator`).
"""

from __future__ import annotations

import sys

import click

from telepay.cli.common import engine_or_exit, secret_values, settings_or_exit
from telepay.config import ConfigError, parse_duration


@click.group()
def payments() -> None:
    """Payments in: reconcile with NOWPayments, refund Stars payments."""


@payments.command("reconcile")
@click.option("--since", default="2d", show_default=True,
              help="Look at unpaid invoices opened this long ago or later: 30m, 12h, 7d.")
def payments_reconcile(since: str) -> None:
    """Look up unpaid invoices in NOWPayments' payments list and take in what was paid."""
    from telepay.clock import SystemClock
    from telepay.logs import configure_logging
    from telepay.models.engine import make_session_factory
    from telepay.clients.nowpayments import ProviderFailure
    from telepay.runtime import nowpayments_client
    from telepay.services.jobs import JobQueue
    from telepay.services.payments.reconcile import Reconciler

    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level, secrets=secret_values(settings))
    try:
        window = parse_duration("--since", since)
        settings.require(("NOWPAYMENTS_API_KEY",))
    except ConfigError as error:
        click.echo(f"telepay: {error}", err=True)
        sys.exit(2)
    engine = engine_or_exit(settings)
    clock = SystemClock()
    session_factory = make_session_factory(engine)
    # By hand the operator wants every unpaid invoice of the window, however recent.
    reconciler = Reconciler(session_factory, nowpayments_client(settings), JobQueue(session_factory, clock=clock),
                            clock, after_minutes=0)
    try:
        recovered = reconciler.run_once(since=clock.now() - window)
    except ProviderFailure as error:
        click.echo(f"telepay: NOWPayments' payments list failed: {error}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    for found in recovered:
        click.echo(f"recovered payment {found.payment_id}: {found.status} (invoice {found.invoice_id})")
    click.echo(f"{len(recovered)} payment status(es) recovered; the running process's worker processes them.")


def _operator_session():
    from telepay.models.engine import make_session_factory

    settings = settings_or_exit()
    return settings, make_session_factory(engine_or_exit(settings))


def _money(amount, currency) -> str:
    return f"{amount.normalize():f} {(currency or '').upper()}".strip() if amount is not None else "-"


@payments.command("list")
@click.option("--review", is_flag=True, help="Only payments waiting for an operator's review.")
@click.option("--limit", default=50, show_default=True)
def payments_list(review: bool, limit: int) -> None:
    """Recent payments, newest first, one line each."""
    from telepay.services.payments.operator import list_payments

    _, session_factory = _operator_session()
    with session_factory() as session:
        rows = list_payments(session, review_only=review, limit=limit)
        for payment, invoice in rows:
            fulfilled = "fulfilled" if payment.fulfilled_at else "not-fulfilled"
            line = (f"{payment.id:>6} {payment.provider_payment_id:20} {payment.status.value:14} "
                    f"invoice={invoice.id} buyer={invoice.buyer_user_id} "
                    f"paid={_money(payment.actually_paid, payment.pay_currency)} {fulfilled}")
            if payment.needs_review:
                line += f" review={payment.needs_review.split(':', 1)[0]}"
            click.echo(line)
    click.echo(f"{len(rows)} payment(s)")


@payments.command("show")
@click.argument("ref")
def payments_show(ref: str) -> None:
    """A payment (our id or NOWPayments' payment id): invoice, IPNs, access given, payout, review."""
    from telepay.errors import NotFound
    from telepay.services.payments.operator import show_payment

    _, session_factory = _operator_session()
    with session_factory() as session:
        try:
            d = show_payment(session, ref)
        except NotFound as error:
            click.echo(f"telepay: {error.message}", err=True)
            sys.exit(2)
        p, i = d.payment, d.invoice
        click.echo(f"payment {p.id} ({p.provider_payment_id}): {p.status.value}"
                   + (f", re-deposit to {p.parent_payment_id}" if p.parent_payment_id else ""))
        click.echo(f"  paid {_money(p.actually_paid, p.pay_currency)} of {_money(p.pay_amount, p.pay_currency)}"
                   f" (~{p.actually_paid_usd} USD); owner share {p.owner_share_usd} USD, fee {p.platform_fee_usd} USD")
        click.echo(f"  fulfilled: {p.fulfilled_at.isoformat() if p.fulfilled_at else 'no'}")
        click.echo(f"  review: {p.needs_review or '-'}")
        click.echo(f"invoice {i.id}: {i.kind.value} {i.status.value}, {i.price_usd} USD, channel {i.channel_id}, "
                   f"buyer {i.buyer_user_id}" + (f" (@{i.buyer_username})" if i.buyer_username else ""))
        click.echo("IPN events:")
        for event in d.events:
            click.echo(f"  {event.received_at.isoformat()} {event.status}"
                       + ("" if event.processed_at else " (not processed yet)"))
        if d.subscription:
            s = d.subscription
            click.echo(f"subscription {s.id}: {s.status.value} until {s.expires_at.isoformat()}")
        for invite in d.invites:
            click.echo(f"  invite {invite.id}: {invite.status.value}")
        if d.payout:
            click.echo(f"payout {d.payout.id}: {d.payout.kind.value} {d.payout.status.value}, "
                       f"{d.payout.amount_usd} USD to {d.payout.to_address}")
        else:
            click.echo("payout: none")


@payments.command("resolve")
@click.argument("ref")
@click.option("--action", required=True, type=click.Choice(["fulfil", "refunded", "dismiss", "deliver"]),
              help="fulfil: grant as a completed payment; refunded: the buyer got the money back (a fulfilled "
                   "payment's access and unpaid owner share are taken back); dismiss: clear the review, keep the "
                   "state; deliver: let a buyer from the delivery queue in (their pair must be live).")
@click.option("--reason", required=True, help="Why; kept in the audit log.")
def payments_resolve(ref: str, action: str, reason: str) -> None:
    """Settle a payment in review, or mark a fulfilled one refunded (our id or NOWPayments' payment
    id); writes an audit row. Marking a refund twice changes nothing."""
    from telepay.clock import SystemClock
    from telepay.errors import Conflict, NotFound
    from telepay.services.fulfilment import Fulfilment
    from telepay.services.jobs import JobQueue
    from telepay.services.payments.operator import Action, resolve_payment

    settings, session_factory = _operator_session()
    clock = SystemClock()
    fulfilment = Fulfilment(JobQueue(session_factory, clock=clock), fee_percent=settings.platform_fee_percent)
    try:
        with session_factory.begin() as session:
            resolution = resolve_payment(session, fulfilment, ref, Action(action), reason, clock.now())
            payment = resolution.payment
            lines = [f"payment {payment.id} ({payment.provider_payment_id}): {action}; status {payment.status.value}"
                     + ("" if resolution.changed else " (refunded before; nothing changed)")]
            refund = resolution.refund
            if refund is not None and refund.subscription is not None:
                s = refund.subscription
                lines.append(f"subscription {s.id}: {s.status.value} until {s.expires_at.isoformat()}")
            if refund is not None and refund.withdrawal is not None:
                w = refund.withdrawal
                lines.append(f"owner's share: {w.outcome.value}" + (f", payout {w.payout_id} "
                             f"{w.status_now.value if w.status_now else ''}" if w.payout_id else ""))
                if refund.review:
                    lines.append(f"SENT already, not recalled: recover it from the owner or write it off "
                                 f"(`telepay payouts show {w.payout_id}`)")
    except (NotFound, Conflict) as error:
        click.echo(f"telepay: {error.message}", err=True)
        sys.exit(2)
    click.echo("\n".join(lines))
