"""Jobs run straight after the job that queued them, by the same worker: no trip through the queue.

A buyer's invite is queued by the payment's processing job, in the transaction that grants the
subscription. Through the queue it waits for the worker to wake, claim it (a transaction of its
own) and start it: on a busy machine each of those hand-offs waits for a core, and together they
were a third of the time from the IPN to the invite. So a kind declared `inline` is queued
*already claimed* when a running job queues it: the row is inserted as running, held by this
worker under the usual lease, in the queuing job's own transaction. Once that transaction has
committed, the worker runs the job at once, in the same task, then completes it as any other.

The row stays the durable record: if the in-line run fails, the job is retried by its kind's
policy; if the process dies first, its lease runs out and any worker takes it back. Only the
transaction's commit hands a job over (a rolled-back one never ran), and only to a worker that
has a handler for its kind; queued anywhere else (the bot, the CLI, a timer) it is an ordinary job.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Collection

from sqlalchemy import event
from sqlalchemy.orm import Session

_PENDING = "telepay.inline_jobs"  # session.info key: jobs claimed in the session's open transaction


@dataclass
class InlineClaims:
    """What the running job queued for its worker to run next: set for the job's duration."""

    worker_id: str
    kinds: Collection[str]  # the kinds this worker has handlers for
    committed: list[Any] = field(default_factory=list)  # ClaimedJobs whose transaction committed
    queued: bool = False  # it queued jobs for the queue: the worker looks for them when it ends

    def take(self) -> list[Any]:
        taken, self.committed = self.committed, []
        return taken


# Set by the worker while a job's handler runs; asyncio.to_thread carries it into the handler's threads.
CURRENT: ContextVar[InlineClaims | None] = ContextVar("telepay_inline_claims", default=None)


def claimant(kind: str, inline: bool) -> InlineClaims | None:
    """The running job's claims, if a job of `kind` (declared `inline` or not) queued now for now
    may be claimed in-line. Any other job queued by a running job is noted, so that its worker
    looks for it as soon as the running job is done (and does not otherwise look after every job)."""
    claims = CURRENT.get()
    if claims is None:
        return None
    if inline and kind in claims.kinds:
        return claims
    claims.queued = True
    return None


def hand_over_on_commit(session: Session, claims: InlineClaims, job: Any) -> None:
    """`job` goes to `claims` when the session's transaction commits, and nowhere if it rolls back."""
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_rollback", _rolled_back)
    pending.append((claims, job))


def _committed(session: Session) -> None:
    for claims, job in session.info.get(_PENDING, []):
        claims.committed.append(job)
    session.info[_PENDING] = []


def _rolled_back(session: Session) -> None:
    session.info[_PENDING] = []
