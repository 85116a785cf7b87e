"""The end of a subscription: reminders before it, removal from the closed channel at it, and a
way back (a Renew button into the usual invoice flow).

`ExpirySweep` (a timer) decides and queues; `Remover` and `Reminder` (job handlers) talk to
Telegram. Time comes from the injected clock, so tests and the demo move it forward instead of
editing rows.
"""

from __future__ import annotations

from datetime import timedelta

from telepay.services.jobs import RetryPolicy
from telepay.services.lifecycle.reminders import Reminder
from telepay.services.lifecycle.removals import RemovalDeferred, Remover
from telepay.services.lifecycle.sweep import EXPIRE_JOB, REMIND_JOB, TIMER_NAME, ExpirySweep, SweepResult

# A removal must happen however long a channel's rights stay lost: back off to hourly tries
# for a month rather than going dead after the default day. A reminder is worthless once late.
RETRY_POLICIES = {
    EXPIRE_JOB: RetryPolicy(interval=timedelta(seconds=30), backoff=2.0, max_interval=timedelta(hours=1),
                            give_up_after=timedelta(days=30)),
    REMIND_JOB: RetryPolicy(interval=timedelta(seconds=60), give_up_after=timedelta(hours=12)),
}

__all__ = [
    "EXPIRE_JOB", "REMIND_JOB", "RETRY_POLICIES", "TIMER_NAME", "ExpirySweep", "Reminder", "RemovalDeferred",
    "Remover", "SweepResult",
]
