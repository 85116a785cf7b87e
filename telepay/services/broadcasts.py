"""Broadcast requests: "Post now" in the bot and the signed trigger share one cooldown.

The cooldown lives in the channel row, claimed with a conditional UPDATE, so two requests at
the same moment (two API instances, or the API and the bot) cannot both pass it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from telepay.errors import CooldownActive, NotFound
from telepay.models import Channel
from telepay.services.jobs import JobQueue

COOLDOWN = timedelta(minutes=5)
POST_JOB = "broadcast.post"


def request_broadcast(session: Session, jobs: JobQueue, channel_id: int, now: datetime) -> int:
    """Queue a (re)post of the channel's posts now, or raise CooldownActive / NotFound."""
    claimed = session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .where(or_(Channel.last_broadcast_requested_at.is_(None),
                   Channel.last_broadcast_requested_at <= now - COOLDOWN))
        .values(last_broadcast_requested_at=now)
        .returning(Channel.id)
    ).scalar_one_or_none()
    if claimed is None:
        last = session.execute(
            select(Channel.last_broadcast_requested_at).where(Channel.id == channel_id)
        ).first()
        if last is None:
            raise NotFound(f"No channel with id {channel_id}.")
        wait = (last[0] + COOLDOWN - now).total_seconds()
        raise CooldownActive(
            f"This channel was posted less than {int(COOLDOWN.total_seconds() // 60)} minutes ago; "
            f"try again in {math.ceil(wait)} seconds.",
            retry_after=math.ceil(wait),
        )
    return jobs.enqueue(session, POST_JOB, {"channel_id": channel_id, "requested_at": now.isoformat()})
