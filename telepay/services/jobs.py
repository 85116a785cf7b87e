"""The durable job queue: a PostgreSQL table claimed with FOR UPDATE SKIP LOCKED.

At-least-once: a job is claimed with a lease; a worker that dies leaves the lease to run out
and another worker takes the job back. Every handler must therefore be idempotent. A claim's
(attempts, lease end) pair is its fencing token: a worker whose lease was taken back cannot
complete, fail or reschedule a job that someone else now holds.

Each kind of job is declared once, as a `JobKind` (name, handler factory, retry policy,
retention), next to its handler; `telepay.services.registry` collects them. Code inserts jobs
through `JobQueue.enqueue`; a statement that must insert jobs itself uses `insert_jobs_sql`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Generic, Iterable, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, Result, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from telegram import Bot

from telepay.clock import Clock, SystemClock
from telepay.models import Job, JobState
from telepay.services import inline_jobs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How a kind of job is retried: every `interval` (growing by `backoff`) until `give_up_after`."""

    interval: timedelta = timedelta(seconds=60)
    give_up_after: timedelta = timedelta(hours=24)
    backoff: float = 1.0
    max_interval: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        seconds = self.interval.total_seconds() * (self.backoff ** max(attempts - 1, 0))
        return timedelta(seconds=min(seconds, self.max_interval.total_seconds()))


DEFAULT_RETRY = RetryPolicy()
# A finished job is kept this long unless its kind says otherwise. Its dedupe key guards against a
# repeat of the same fact only while the row exists, so a kind's retention outlives any repeat.
DEFAULT_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime | None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class RunAgain:
    """What a handler returns when its work is not over yet (a payout waiting for the chain): the
    same job row runs again at `at`, instead of a new job being inserted for every look."""

    at: datetime


Handler = Callable[[ClaimedJob], Awaitable[RunAgain | None]]

# What a kind's handler factory is given: the composition root's services (each capability
# states, as a Protocol, the part it needs) and the bot.
S = TypeVar("S", contravariant=True)


@dataclass(frozen=True)
class JobKind(Generic[S]):
    """A kind of job, declared once next to its handler. `handler` builds the handler from the
    services and the bot, or returns None when this process cannot serve the kind (its settings
    are absent): such jobs wait, queued, for a process that can."""

    name: str
    handler: Callable[[S, Bot], Handler | None]
    retry: RetryPolicy = DEFAULT_RETRY
    retention: timedelta = DEFAULT_RETENTION
    # Queued by a running job: claimed at once and run by the same worker right after the queuing
    # job's transaction commits (`telepay.services.inline_jobs`).
    inline: bool = False


class JobRegistry:
    """Every kind the process knows, by name: the queue reads policies and retention from it, the
    worker its handlers."""

    def __init__(self, kinds: Iterable[JobKind[Any]] = ()):
        self.kinds: dict[str, JobKind[Any]] = {}
        for kind in kinds:
            if kind.name in self.kinds:
                raise ValueError(f"job kind {kind.name!r} is declared twice")
            self.kinds[kind.name] = kind

    def policy(self, name: str) -> RetryPolicy:
        kind = self.kinds.get(name)
        return kind.retry if kind else DEFAULT_RETRY

    def retention(self, name: str) -> timedelta:
        kind = self.kinds.get(name)
        return kind.retention if kind else DEFAULT_RETENTION

    def inline(self, name: str) -> bool:
        kind = self.kinds.get(name)
        return kind.inline if kind else False

    def handlers(self, services: Any, bot: Bot) -> dict[str, Handler]:
        """The handlers this process can run, by kind."""
        built = {name: kind.handler(services, bot) for name, kind in self.kinds.items()}
        return {name: handler for name, handler in built.items() if handler is not None}


def insert_jobs_sql(rows: str, *, returning: bool = False) -> str:
    """SQL that queues one job per row of `rows`, a SELECT of (kind, payload, dedupe_key, now), for
    statements that decide and queue in one round trip. Like `JobQueue.enqueue`, a (kind, dedupe
    key) already present is skipped; with `returning`, the new jobs' ids are returned."""
    return (
        "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, created_at, updated_at) "
        f"SELECT queued_job.kind, queued_job.payload, queued_job.dedupe_key, '{JobState.QUEUED.value}', 0, "
        "queued_job.now, queued_job.now, queued_job.now "
        f"FROM ({rows}) AS queued_job(kind, payload, dedupe_key, now) "
        "ON CONFLICT ON CONSTRAINT uq_jobs_kind_dedupe_key DO NOTHING"
        + (" RETURNING id" if returning else "")
    )


def rows_touched(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (its result is a cursor result; the type says less)."""
    return cast(CursorResult[Any], result).rowcount


class JobNotFound(Exception):
    pass


@dataclass
class JobQueue:
    session_factory: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)
    kinds: JobRegistry = field(default_factory=JobRegistry)
    lease: timedelta = timedelta(minutes=5)

    def policy(self, kind: str) -> RetryPolicy:
        return self.kinds.policy(kind)

    # -- producing ---------------------------------------------------------------------------

    def enqueue(
        self,
        session: Session,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        dedupe_key: str | None = None,
        run_at: datetime | None = None,
    ) -> int | None:
        """Add a job inside the caller's transaction. Returns its id, or None if deduplicated.

        A kind declared `inline`, queued for now by a running job, is inserted already claimed by
        that job's worker, which runs it once this transaction commits (`inline_jobs`)."""
        now = self.clock.now()
        claims = inline_jobs.claimant(kind, inline=run_at is None and self.kinds.inline(kind))
        lease_end = now + self.lease if claims else None
        statement = (
            insert(Job)
            .values(kind=kind, payload=payload or {}, dedupe_key=dedupe_key, run_at=run_at or now,
                    created_at=now, updated_at=now, state=JobState.RUNNING if claims else JobState.QUEUED,
                    attempts=1 if claims else 0, locked_by=claims.worker_id if claims else None,
                    locked_until=lease_end)
            .on_conflict_do_nothing(constraint="uq_jobs_kind_dedupe_key")
            .returning(Job.id)
        )
        job_id = session.execute(statement).scalar_one_or_none()
        if claims and job_id is not None:
            inline_jobs.hand_over_on_commit(session, claims, ClaimedJob(
                id=job_id, kind=kind, payload=payload or {}, attempts=1, created_at=now, locked_until=lease_end))
        return job_id

    # -- consuming ---------------------------------------------------------------------------

    def claim(self, worker_id: str, limit: int = 1, kinds: Iterable[str] | None = None) -> list[ClaimedJob]:
        """Take up to `limit` runnable jobs: queued and due, or running with an expired lease."""
        now = self.clock.now()
        runnable = or_(
            (Job.state == JobState.QUEUED) & (Job.run_at <= now),
            (Job.state == JobState.RUNNING) & (Job.locked_until < now),
        )
        candidates = select(Job.id).where(runnable).order_by(Job.run_at, Job.id).limit(limit)
        if kinds is not None:
            candidates = candidates.where(Job.kind.in_(list(kinds)))
        # Picked once, in a materialized CTE: as `id IN (subquery)` PostgreSQL may run the subquery
        # again for each row it updates, and each run skips the rows this statement has already
        # locked, so the claim ran past `limit`.
        picked = candidates.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        with self.session_factory.begin() as session:
            rows = session.execute(
                update(Job)
                .where(Job.id == picked.c.id)
                .values(
                    state=JobState.RUNNING,
                    locked_by=worker_id,
                    locked_until=now + self.lease,
                    attempts=Job.attempts + 1,
                    updated_at=now,
                )
                .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.created_at, Job.locked_until)
                .execution_options(synchronize_session=False)
            ).all()
        return [ClaimedJob(id=row[0], kind=row[1], payload=row[2], attempts=row[3], created_at=row[4],
                           locked_until=row[5]) for row in sorted(rows, key=lambda r: r[0])]

    def _held(self, job: ClaimedJob, worker_id: str) -> ColumnElement[bool]:
        held = (Job.id == job.id) & (Job.locked_by == worker_id) & (Job.attempts == job.attempts) & (
            Job.state == JobState.RUNNING
        )
        # The lease end tells two claims apart even when a reschedule has reset `attempts`.
        return held & (Job.locked_until == job.locked_until) if job.locked_until is not None else held

    def complete(self, job: ClaimedJob, worker_id: str) -> bool:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            result = session.execute(
                update(Job)
                .where(self._held(job, worker_id))
                .values(state=JobState.DONE, locked_by=None, locked_until=None, finished_at=now, updated_at=now)
            )
        if rows_touched(result) == 0:
            logger.warning("job %s (%s) finished after its lease was taken back", job.id, job.kind)
        return rows_touched(result) == 1

    def fail(self, job: ClaimedJob, worker_id: str, error: str) -> JobState | None:
        """Schedule a retry by the kind's policy, or mark the job dead once it is out of time."""
        now = self.clock.now()
        policy = self.policy(job.kind)
        next_run = now + policy.delay(job.attempts)
        dead = next_run - job.created_at > policy.give_up_after
        state = JobState.DEAD if dead else JobState.QUEUED
        with self.session_factory.begin() as session:
            result = session.execute(
                update(Job)
                .where(self._held(job, worker_id))
                .values(
                    state=state,
                    run_at=next_run,
                    locked_by=None,
                    locked_until=None,
                    last_error=error[:4000],
                    finished_at=now if dead else None,
                    updated_at=now,
                )
            )
        if rows_touched(result) == 0:
            return None
        log = logger.error if dead else logger.warning
        log("job %s (%s) attempt %s failed%s: %s", job.id, job.kind, job.attempts,
            ", now dead" if dead else f", retry at {next_run.isoformat()}", error.splitlines()[0] if error else "")
        return state

    def reschedule(self, job: ClaimedJob, worker_id: str, at: datetime) -> bool:
        """The handler's work goes on later (`RunAgain`): the same row runs again at `at`, with a
        fresh count of attempts and a fresh retry budget, since the run itself succeeded."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            result = session.execute(
                update(Job)
                .where(self._held(job, worker_id))
                .values(state=JobState.QUEUED, run_at=at, locked_by=None, locked_until=None, attempts=0,
                        created_at=now, last_error=None, updated_at=now)
            )
        if rows_touched(result) == 0:
            logger.warning("job %s (%s) rescheduled after its lease was taken back", job.id, job.kind)
        return rows_touched(result) == 1

    def release(self, job: ClaimedJob, worker_id: str) -> bool:
        """Hand a claimed job back untouched (shutdown): it runs again at once elsewhere."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            result = session.execute(
                update(Job)
                .where(self._held(job, worker_id))
                .values(state=JobState.QUEUED, locked_by=None, locked_until=None,
                        attempts=Job.attempts - 1, run_at=now, updated_at=now)
            )
        return rows_touched(result) == 1

    # -- operating ---------------------------------------------------------------------------

    def retry(self, job_id: int) -> None:
        """Requeue a dead or cancelled job now, with a fresh 24 h budget."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise JobNotFound(job_id)
            if job.state not in (JobState.DEAD, JobState.CANCELLED, JobState.QUEUED):
                raise ValueError(f"job {job_id} is {job.state.value}; "
                                 "only dead, cancelled or queued jobs can be retried")
            job.state, job.run_at, job.created_at, job.finished_at = JobState.QUEUED, now, now, None

    def cancel(self, job_id: int) -> None:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None:
                raise JobNotFound(job_id)
            if job.state not in (JobState.QUEUED, JobState.DEAD):
                raise ValueError(f"job {job_id} is {job.state.value}; only queued or dead jobs can be cancelled")
            job.state, job.finished_at, job.locked_by, job.locked_until = JobState.CANCELLED, now, None, None

    def list(self, state: JobState | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            query = query.where(Job.state == state)
        if kind is not None:
            query = query.where(Job.kind == kind)
        with self.session_factory() as session:
            return list(session.scalars(query))

    def prune(self, limit: int = 10_000) -> int:
        """Delete up to `limit` done or cancelled jobs older than their kind's retention (dead jobs
        stay until an operator acts on them). Returns how many went."""
        now = self.clock.now()
        keep = case({name: kind.retention for name, kind in self.kinds.kinds.items()}, value=Job.kind,
                    else_=DEFAULT_RETENTION) if self.kinds.kinds else DEFAULT_RETENTION
        expired = (select(Job.id).where(Job.state.in_([JobState.DONE, JobState.CANCELLED]),
                                         Job.finished_at < now - keep).limit(limit))
        with self.session_factory.begin() as session:
            result = session.execute(delete(Job).where(Job.id.in_(expired.scalar_subquery()))
                                     .execution_options(synchronize_session=False))
        return rows_touched(result)

    def depth(self) -> dict[str, dict[str, int]]:
        """Job counts by kind and state, for /status and the CLI."""
        with self.session_factory() as session:
            rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
            counts: dict[str, dict[str, int]] = {}
            for kind, state, count in rows:
                counts.setdefault(kind, {})[state.value] = count
            return counts
