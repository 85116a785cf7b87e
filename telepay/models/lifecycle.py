"""Where the reminder scan has got to, per reminder offset.

The sweep queues reminders for subscriptions whose expiry has come within an offset's reach;
remembering the last (expires_at, subscription id) it queued for each offset lets every run
read only what is new instead of the whole window. The jobs' dedupe keys, not this position,
are what make each reminder go out once: losing a row here costs a rescan, never a repeat.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped, mapped_column

from telepay.models.base import Base, utcnow


class ReminderCursor(Base):
    __tablename__ = "reminder_cursors"

    # The offset in seconds, e.g. 259200 for "3d".
    offset_seconds: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    expires_at: Mapped[datetime]
    subscription_id: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
