"""Small operational tables: bot persistence, accepted webhook signatures, timer runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from telepay.models.base import Base, utcnow


class BotState(Base):
    """PTB persistence: one JSON document per (kind, key), e.g. ("user_data", "42")."""

    __tablename__ = "bot_state"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[Any] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AcceptedSignature(Base):
    """Internal webhook signatures already accepted: kept past the 300 s window, then pruned.

    In PostgreSQL rather than memory so several API instances refuse the same replay.
    """

    __tablename__ = "accepted_signatures"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    accepted_at: Mapped[datetime] = mapped_column(default=utcnow)


class TimerRun(Base):
    """The last run of each periodic task, shown by /status."""

    __tablename__ = "timer_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
