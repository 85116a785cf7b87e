"""`telepay payments refund`, `telepay stars reconcile|report`, `telepay texts set|show`.

Registered on the main group by `telepay.cli` (`refund` joins the `payments` group of
`telepay.cli.payments`). A refund calls Telegram first (refundStarPayment:
Telegram refuses a second refund of one charge, so a rerun after a crash is safe) and then
records it and ends access in one transaction; the running process's worker sends the messages.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from telepay.cli.common import fail_config, session_factory as _session_factory, settings_or_exit
from telepay.cli.payments import payments
from telepay.config import ConfigError


def _bot(settings):
    from telegram import Bot

    try:
        settings.require(("TELEGRAM_BOT_TOKEN",))
    except ConfigError as error:
        fail_config(error)
    return Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_api_base_url)


@payments.command("refund")
@click.argument("payment")
def payments_refund(payment: str) -> None:
    """Refund a Stars payment (its star payment id or Telegram charge id): the Stars go back,
    access ends, the owner's unreleased share is cancelled, buyer, owner and operators are told."""
    from telepay.clock import SystemClock
    from telepay.services.jobs import JobQueue
    from telepay.services.stars.refunds import RefundRefused, refund

    settings = settings_or_exit()
    factory = _session_factory()
    try:
        result = asyncio.run(refund(factory, JobQueue(factory), _bot(settings), payment, SystemClock().now()))
    except RefundRefused as error:
        raise click.ClickException(str(error))
    share = (f"held share of {result.share_cancelled} USD cancelled" if result.share_cancelled is not None
             else "no held share")
    click.echo(f"star payment {result.star_payment_id} refunded; {share}"
               + (f"; REVIEW: {result.review}" if result.review else ""))


@click.group()
def stars() -> None:
    """Telegram Stars: reconciliation with Telegram's ledger, the money report."""


@stars.command("reconcile")
def stars_reconcile() -> None:
    """Compare our Stars payments with getStarTransactions; alert operators on differences."""
    from telepay.clock import SystemClock
    from telepay.services.jobs import JobQueue
    from telepay.services.stars.reconcile import StarsReconciler

    settings = settings_or_exit()
    factory = _session_factory()
    reconciler = StarsReconciler(factory, JobQueue(factory), SystemClock())

    async def run():
        async with _bot(settings) as bot:
            return await reconciler.run(bot)

    found = asyncio.run(run())
    for difference in found:
        click.echo(f"{difference['kind']:24} {difference}")
    click.echo(f"{len(found)} differences" if found else "our records agree with Telegram's")
    if found:
        raise SystemExit(1)


def print_stars_report(session, exact: bool = False) -> None:
    from telepay.services.stars.report import stars_report

    money = stars_report(session)
    show = str if exact else (lambda value: f"{value:,.2f}")
    click.echo("")
    click.echo(f"Telegram Stars: {money.payments} payments, {money.stars:,} Stars received = "
               f"{show(money.received)} USD")
    for label, value in (("platform fees", money.fees), ("released to payouts", money.released),
                         ("held", money.held), ("refunded in hold", money.refunded),
                         ("under review", money.review), ("refunded after release", money.refunded_after_release)):
        click.echo(f"  {label:24} {show(value):>14} USD")


@stars.command("report")
@click.option("--exact", is_flag=True, help="Every digit, not cents.")
def stars_money(exact: bool) -> None:
    """Stars received, their USD value, fees, held, released, refunded."""
    with _session_factory()() as session:
        print_stars_report(session, exact)


@click.group()
def texts() -> None:
    """What /privacy and /terms answer."""


@texts.command("set")
@click.argument("name", type=click.Choice(["privacy", "terms"]))
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def texts_set(name: str, path: Path) -> None:
    """Answer /privacy or /terms with the text in PATH (instead of the shipped default)."""
    from telepay.clock import SystemClock
    from telepay.services.stars.support import MAX_TEXT, set_legal_text

    text = path.read_text(encoding="utf-8").strip()
    if not text or len(text) > MAX_TEXT:
        raise click.ClickException(f"the text must be 1-{MAX_TEXT} characters (one Telegram message)")
    with _session_factory().begin() as session:
        set_legal_text(session, name, text, SystemClock().now())
    click.echo(f"/{name} now answers with {path} ({len(text)} characters)")


@texts.command("show")
@click.argument("name", type=click.Choice(["privacy", "terms"]))
def texts_show(name: str) -> None:
    """The text /privacy or /terms answers now."""
    from telepay.services.stars.support import legal_text

    with _session_factory()() as session:
        click.echo(legal_text(session, name))
