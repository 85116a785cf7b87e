"""The expiry sweep: finds subscriptions whose time ran out, and those whose reminders are due.

It only decides and queues; Telegram is called by the job handlers (`removals.py`,
`reminders.py`), paced by the bot's rate limiter and retried by the job queue. Each batch is one
short transaction that:

- takes `pg_try_advisory_xact_lock` first, so one sweep runs at a time however many processes
  run the timer (a process that does not get the lock simply skips this tick);
- reads due rows through the partial index `ix_subscriptions_due` in expiry order, with
  `FOR UPDATE SKIP LOCKED` so a row being renewed right now is left for the next run;
- marks them expired and queues one `subscription.expire` job each, in one statement.

Job dedupe keys name the subscription and its expiry (`expire:<id>:<expires_at in µs>`,
`remind:<id>:<µs>:<offset s>`): a rerun never queues twice, and a renewal, which moves the
expiry, gets fresh reminders and, one day, its own removal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import ReminderCursor
from telepay.services.jobs import insert_jobs_sql
from telepay.services.subscriptions import EPOCH, EXPIRE_JOB

logger = logging.getLogger(__name__)

REMIND_JOB = "subscription.remind"
TIMER_NAME = "subscriptions.sweep"
# One key for every sweeper, in every process: "only one sweep at a time".
ADVISORY_LOCK_KEY = 0x5EB7_0001

_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")

# Claim, mark and queue in one round trip: pg8000 parses every statement's text anew, so one
# statement per batch rather than one per subscription.
_EXPIRE_BATCH = text(f"""
WITH due AS (
    SELECT id FROM subscriptions
    WHERE status = 'active' AND expires_at <= :cutoff
    ORDER BY expires_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE subscriptions AS s SET status = 'expired', updated_at = :now
    FROM due WHERE s.id = due.id
    RETURNING s.id, (extract(epoch FROM s.expires_at) * 1000000)::bigint AS expires_us
), queued AS (
    {insert_jobs_sql('''
    SELECT CAST(:kind AS text), jsonb_build_object('subscription_id', id, 'expires_at_us', expires_us),
           'expire:' || id || ':' || expires_us, CAST(:now AS timestamptz)
    FROM expired''', returning=True)}
)
SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM queued)
""")

# Reminders for an offset: active subscriptions whose expiry came within the offset's reach since
# the cursor, skipping any whose whole term is shorter than the offset (a one-day plan needs no
# "one day left" the moment it is bought) and Star subscriptions that renew by themselves (if a
# renewal fails, the removal's message offers Renew, as for any subscription that ended).
_REMIND_BATCH = text(f"""
WITH batch AS (
    SELECT id, expires_at FROM subscriptions
    WHERE status = 'active' AND NOT star_renews AND expires_at > :now AND expires_at <= :horizon
      AND (expires_at, id) > (:after_at, :after_id)
    ORDER BY expires_at, id
    LIMIT :batch
), queued AS (
    {insert_jobs_sql('''
    SELECT CAST(:kind AS text), jsonb_build_object('subscription_id', b.id, 'expires_at_us', b.expires_us,
                                                   'offset_seconds', CAST(:offset AS bigint)),
           'remind:' || b.id || ':' || b.expires_us || ':' || CAST(:offset AS bigint), CAST(:now AS timestamptz)
    FROM (SELECT batch.id, (extract(epoch FROM batch.expires_at) * 1000000)::bigint AS expires_us
          FROM batch JOIN subscriptions AS s ON s.id = batch.id
          WHERE s.started_at < batch.expires_at - make_interval(secs => CAST(:offset AS bigint))) AS b''',
                    returning=True)}
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM queued), last.expires_at, last.id
FROM (SELECT 1) AS one
LEFT JOIN (SELECT expires_at, id FROM batch ORDER BY expires_at DESC, id DESC LIMIT 1) AS last ON true
""")


@dataclass
class SweepResult:
    expired: int = 0
    removals_queued: int = 0
    reminders_queued: int = 0
    skipped: bool = False  # another process holds the sweep lock

    @property
    def queued(self) -> int:
        return self.removals_queued + self.reminders_queued


class ExpirySweep:
    """One pass of the sweep (`run_once`), run by a timer every SWEEP_INTERVAL_SECONDS."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock, *, batch_size: int = 500,
                 grace: timedelta = timedelta(0), reminder_offsets: Iterable[timedelta] = ()):
        self.session_factory = session_factory
        self.clock = clock
        self.batch_size = batch_size
        self.grace = grace
        self.reminder_offsets = sorted(set(reminder_offsets), reverse=True)

    def run_once(self) -> SweepResult:
        """Expire everything due, then queue every reminder that is due; batch by batch."""
        result = SweepResult()
        while True:
            claimed = self.expire_batch()
            if claimed is None:
                result.skipped = True
                return result
            expired, queued = claimed
            result.expired += expired
            result.removals_queued += queued
            if expired < self.batch_size:
                break
        for offset in self.reminder_offsets:
            while True:
                found = self.remind_batch(offset)
                if found is None:
                    result.skipped = True
                    return result
                scanned, queued = found
                result.reminders_queued += queued
                if scanned < self.batch_size:
                    break
        if result.expired or result.reminders_queued:
            logger.info("sweep: %s subscription(s) expired, %s removal(s) and %s reminder(s) queued",
                        result.expired, result.removals_queued, result.reminders_queued)
        return result

    def expire_batch(self) -> tuple[int, int] | None:
        """Mark up to one batch of due subscriptions expired and queue their removals:
        (expired, jobs queued), or None if another sweep holds the lock."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            if not session.execute(_LOCK, {"key": ADVISORY_LOCK_KEY}).scalar_one():
                return None
            expired, queued = session.execute(_EXPIRE_BATCH, {
                "cutoff": now - self.grace, "now": now, "batch": self.batch_size, "kind": EXPIRE_JOB,
            }).one()
        return expired, queued

    def remind_batch(self, offset: timedelta) -> tuple[int, int] | None:
        """Queue reminders for up to one batch of subscriptions that came within `offset` of their
        expiry since the last run: (subscriptions scanned, jobs queued), or None if locked out."""
        now = self.clock.now()
        seconds = int(offset.total_seconds())
        with self.session_factory.begin() as session:
            if not session.execute(_LOCK, {"key": ADVISORY_LOCK_KEY}).scalar_one():
                return None
            cursor = session.get(ReminderCursor, seconds)
            after_at, after_id = (cursor.expires_at, cursor.subscription_id) if cursor else (EPOCH, 0)
            scanned, queued, last_at, last_id = session.execute(_REMIND_BATCH, {
                "now": now, "horizon": now + offset, "after_at": after_at, "after_id": after_id,
                "batch": self.batch_size, "kind": REMIND_JOB, "offset": seconds,
            }).one()
            if last_at is not None:
                session.execute(
                    insert(ReminderCursor)
                    .values(offset_seconds=seconds, expires_at=last_at, subscription_id=last_id, updated_at=now)
                    .on_conflict_do_update(index_elements=["offset_seconds"],
                                           set_={"expires_at": last_at, "subscription_id": last_id,
                                                 "updated_at": now}))
        return scanned, queued
