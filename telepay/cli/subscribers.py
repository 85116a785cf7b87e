"""`telepay subscribers waiting`: the delivery queue, buyers who paid and are not let in yet.

A buyer waits while their channel pair is paused for missing bot rights; after 48 hours they
are moved to review for a refund (see docs/decisions.md). Reads the database only.
"""

from __future__ import annotations

import click

from telepay.cli.common import session_factory as _session_factory


@click.group()
def subscribers() -> None:
    """Subscribers: who paid and waits to be let in."""


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
