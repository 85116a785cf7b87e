"""`telepay payments reconcile [--since]`: find paid invoices whose every IPN was lost.

Registered on the main group by `telepay.cli`; `telepay payments refund` (Stars) joins this group
from `telepay.cli.stars`. Does what the running process's reconciliation
timer does (`telepay.services.payments.reconcile`), by hand and over a window the operator
chooses: each recovered payment is recorded as its IPN would have been, and the running
process's worker processes it (fulfils, pays out) as usual.
"""

from __future__ import annotations

import sys

import click

from telepay.cli.common import engine_or_exit, settings_or_exit
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
    configure_logging(settings.log_format, settings.log_level)
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
