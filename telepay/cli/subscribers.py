"""`telepay subscribers waiting` (the delivery queue) and `subscribers show USER` (one user).

A buyer waits while their channel pair is paused for missing bot rights; after 48 hours they
are moved to review for a refund (see docs/decisions.md). Reads the database only.
"""

from __future__ import annotations

import click

from telepay.cli.common import session_factory as _session_factory


@click.group()
def subscribers() -> None:
    """Subscribers: who paid and waits to be let in; everything about one user."""


@subscribers.command("waiting")
def subscribers_waiting() -> None:
    """The delivery queue, oldest first: waiting buyers, then those moved to review for a refund."""
    from telepay.services.delivery import delivery_queue

    with _session_factory()() as session:
        queue = delivery_queue(session)
    if not queue:
        click.echo("nobody is waiting")
        return
    for w in queue:
        click.echo(f"{w.status.value:8} since {w.since:%Y-%m-%d %H:%M} UTC  user={w.user_id:<12} "
                   f"channel={w.channel_id:<6} “{w.channel_title}”  invoice={w.invoice_id or '-'}")


def _mask(link: str | None, show: bool) -> str:
    """An invite link's tail only: the whole link is the buyer's key to the channel."""
    if not link:
        return "-"
    return link if show else "…" + link[-6:]


def _usd(value) -> str:
    """Shares are kept to the micro-dollar: every digit, no trailing zeros."""
    return "-" if value is None else f"{value.normalize():f}"


def _at(value) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@subscribers.command("show")
@click.argument("user")
@click.option("--links", is_flag=True, help="Show invite links in full (masked by default).")
def subscribers_show(user: str, links: bool) -> None:
    """Everything about one Telegram user (numeric id or @username): subscriptions, invites,
    invoices, payments, the payouts they feed, the delivery queue, support requests, messages."""
    from telepay.errors import NotFound
    from telepay.services.subscribers import AmbiguousUser, resolve_user, show_user

    with _session_factory()() as session:
        try:
            view = show_user(session, resolve_user(session, user))
        except AmbiguousUser as error:
            ids = "\n".join(f"  {uid:<14} last invoice {_at(seen)} UTC" for uid, seen in error.candidates)
            raise click.ClickException(f"{error.message} (newest first); show one by its id:\n{ids}")
        except NotFound as error:
            raise click.ClickException(error.message)
    names = ", ".join("@" + n for n in view.usernames) or "-"
    click.echo(f"user {view.user_id}  usernames on invoices: {names}")
    for c in view.owned:
        click.echo(f"owns channel {c.id} “{c.title}” ({c.status})")
    click.echo(f"subscriptions ({len(view.subscriptions)}):")
    for s in view.subscriptions:
        renews = "" if s.star_renews is None else f"  Stars, auto-renew {'on' if s.star_renews else 'off'}"
        click.echo(f"  {s.id:>6} channel={s.channel_id} “{s.channel_title}” tier={s.tier or '-'} {s.status:8} "
                   f"since {_at(s.started_at)} ends {_at(s.expires_at)}{renews}")
    click.echo(f"invites ({len(view.invites)}):")
    for i in view.invites:
        click.echo(f"  {i.id:>6} {i.status:11} chat={i.chat_id} invoice={i.invoice_id or '-'} "
                   f"link={_mask(i.link, links)} created {_at(i.created_at)} used {_at(i.used_at)} "
                   f"revoked {_at(i.revoked_at)}")
    click.echo(f"delivery queue: {len(view.waiting)}")
    for w in view.waiting:
        click.echo(f"  invite {w.id} {w.status} since {_at(w.waiting_since)} invoice={w.invoice_id or '-'}")
    click.echo(f"invoices ({len(view.invoices)}):")
    for v in view.invoices:
        price = f"{v.price_stars} XTR" if v.method == "stars" else f"{v.price_usd} USD"
        click.echo(f"  {v.id} {v.kind:12} {v.method:6} channel={v.channel_id} tier={v.tier or '-'} {price} "
                   f"{v.status:14} created {_at(v.created_at)} completed {_at(v.completed_at)} "
                   f"delivered {_at(v.access_delivered_at)}")
    click.echo(f"payments ({len(view.payments)}):")
    for p in view.payments:
        review = f" review: {p.review.splitlines()[0][:80]}" if p.review else ""
        click.echo(f"  {p.rail:6} {p.id:>6} {p.provider_id} {p.status:14} {p.amount} (~{_usd(p.usd)} USD) "
                   f"share {_usd(p.owner_share_usd)} USD "
                   f"invoice={p.invoice_id or '-'} at {_at(p.at)}{review}")
    click.echo(f"payouts their payments feed ({len(view.payouts)}):")
    for o in view.payouts:
        click.echo(f"  {o.id:>6} {o.kind:8} {o.status:18} {_usd(o.amount_usd)} USD  payments {list(o.payment_ids)}")
    if view.support:
        click.echo(f"support requests ({len(view.support)}):")
        for r in view.support:
            click.echo(f"  {r.id:>6} {r.payment_ref} {_at(r.created_at)} "
                       f"{'resolved' if r.resolved_at else 'open'}: {r.message.splitlines()[0][:80]}")
    click.echo(f"messages and jobs about them ({len(view.jobs)}):")
    for j in view.jobs:
        text = f" “{j.text}”" if j.text else ""
        failed = f" error: {j.last_error.splitlines()[0][:80]}" if j.last_error else ""
        click.echo(f"  {j.id:>6} {j.kind:20} {j.state:9} {_at(j.created_at)}{text}{failed}")
