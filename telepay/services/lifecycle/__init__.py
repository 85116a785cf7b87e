"""The end of a subscription: reminders before it, removal from the closed channel at it, and a
way back (a Renew button into the usual invoice flow).

`ExpirySweep` (a timer) decides and queues; `Remover` and `Reminder` (job handlers) talk to
Telegram. Time comes from the injected clock, so tests and the demo move it forward instead of
editing rows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot

from telepay.clock import Clock
from telepay.services.jobs import JobKind, JobQueue, RetryPolicy
from telepay.services.lifecycle.reminders import Reminder
from telepay.services.lifecycle.removals import RemovalDeferred, Remover
from telepay.services.lifecycle.sweep import EXPIRE_JOB, REMIND_JOB, TIMER_NAME, ExpirySweep, SweepResult



class _Needs(Protocol):
    session_factory: sessionmaker[Session]
    jobs: JobQueue
    clock: Clock


def _remover(services: _Needs, bot: Bot) -> Remover:
    return Remover(services.session_factory, bot, services.jobs, services.clock)


def _reminder(services: _Needs, bot: Bot) -> Reminder:
    return Reminder(services.session_factory, bot, services.clock)


# A removal must happen however long a channel's rights stay lost: back off to hourly tries
# for a month rather than going dead after the default day. A reminder is worthless once late.
EXPIRE = JobKind(EXPIRE_JOB, _remover, RetryPolicy(interval=timedelta(seconds=30), backoff=2.0,
                                                   max_interval=timedelta(hours=1), give_up_after=timedelta(days=30)))
REMIND = JobKind(REMIND_JOB, _reminder, RetryPolicy(interval=timedelta(seconds=60), give_up_after=timedelta(hours=12)))
JOB_KINDS = (EXPIRE, REMIND)

__all__ = [
    "EXPIRE", "EXPIRE_JOB", "JOB_KINDS", "REMIND", "REMIND_JOB", "TIMER_NAME", "ExpirySweep", "Reminder",
    "RemovalDeferred", "Remover", "SweepResult",
]
