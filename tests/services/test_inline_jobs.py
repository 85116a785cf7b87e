"""Jobs of an `inline` kind, queued by a running job, run next in the same worker: claimed as they
are queued, run once the queuing transaction commits, retried or taken back from their row."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from telepay.clock import ManualClock
from telepay.models import JobState
from telepay.services import inline_jobs
from telepay.services.inline_jobs import InlineClaims
from telepay.services.jobs import JobKind, JobQueue, JobRegistry
from telepay.services.worker import Worker
from telepay_sandbox.waiting import until_async

KINDS = JobRegistry([JobKind("grant", lambda services, bot: None),
                     JobKind("deliver", lambda services, bot: None, inline=True)])


def _queue(session_factory, clock=None) -> JobQueue:
    return JobQueue(session_factory, clock=clock or ManualClock(), kinds=KINDS)


def _run(session_factory, queue, handlers, until, *, poll_seconds: float = 30) -> Worker:
    """A worker that polls rarely: what runs, runs because it was claimed in-line or woken."""
    async def scenario():
        worker = Worker(queue, handlers, poll_seconds=poll_seconds)
        worker.start()
        with session_factory.begin() as session:
            queue.enqueue(session, "grant", {"n": 1})
        worker.wake()
        await until_async(lambda: until(worker), "the scenario's condition")
        await worker.stop()
        return worker

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_delivery_queued_by_a_running_job_is_claimed_as_queued_and_runs_right_after_its_commit(
        session_factory):
    queue = _queue(session_factory)
    claimed, seen = [], []
    claim = queue.claim
    queue.claim = lambda *args, **kwargs: [claimed.append(job.kind) or job for job in claim(*args, **kwargs)]

    def grant(n):
        with session_factory.begin() as session:
            queue.enqueue(session, "deliver", {"n": n})
            queue.enqueue(session, "deliver", {"n": n}, run_at=queue.clock.now() + timedelta(hours=1))  # later: queued

    async def on_grant(job):
        await asyncio.to_thread(grant, job.payload["n"])

    async def on_deliver(job):
        [row] = [j for j in queue.list(kind="deliver") if j.id == job.id]
        [parent] = queue.list(kind="grant")
        seen.append((row.state, row.attempts, row.locked_by, parent.state))

    worker = _run(session_factory, queue, {"grant": on_grant, "deliver": on_deliver},
                  lambda w: queue.list(JobState.DONE, kind="grant"))
    # Run while the grant was still its worker's: before it was even marked done.
    assert seen == [(JobState.RUNNING, 1, worker.worker_id, JobState.RUNNING)]
    assert claimed == ["grant"]  # the delivery never went through a claim
    states = sorted((j.state, j.attempts) for j in queue.list(kind="deliver"))
    assert states == [(JobState.DONE, 1), (JobState.QUEUED, 0)]


def test_a_failed_delivery_is_retried_from_its_row(session_factory):
    clock = ManualClock()
    queue = _queue(session_factory, clock)
    tries = []

    def grant():
        with session_factory.begin() as session:
            queue.enqueue(session, "deliver", {})

    async def on_grant(job):
        await asyncio.to_thread(grant)

    async def on_deliver(job):
        tries.append(job.attempts)
        if len(tries) == 1:
            raise ConnectionError("Telegram did not answer")

    async def scenario():
        worker = Worker(queue, {"grant": on_grant, "deliver": on_deliver}, poll_seconds=30)
        worker.start()
        with session_factory.begin() as session:
            queue.enqueue(session, "grant", {})
        worker.wake()
        await until_async(lambda: queue.list(JobState.DONE, kind="grant"), "the grant done")
        [failed] = queue.list(kind="deliver")
        assert failed.state == JobState.QUEUED and "did not answer" in failed.last_error
        clock.advance(timedelta(seconds=61))  # its kind's retry interval
        worker.wake()
        await until_async(lambda: queue.list(JobState.DONE, kind="deliver"), "the delivery done")
        await worker.stop()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert tries == [1, 2]


def test_a_delivery_queued_in_a_transaction_that_rolled_back_never_runs(session_factory):
    queue = _queue(session_factory)
    delivered = []

    def grant():
        with session_factory.begin() as session:
            queue.enqueue(session, "deliver", {})
            raise ValueError("the grant failed after queuing its delivery")

    async def on_grant(job):
        await asyncio.to_thread(grant)

    async def on_deliver(job):
        delivered.append(job.id)

    _run(session_factory, queue, {"grant": on_grant, "deliver": on_deliver},
         lambda w: (queue.list(kind="grant")[0].last_error or "").endswith("after queuing its delivery"))
    assert delivered == [] and queue.list(kind="deliver") == []


def test_a_delivery_whose_worker_died_after_the_commit_is_taken_back_when_its_lease_runs_out(session_factory):
    clock = ManualClock()
    queue = _queue(session_factory, clock)
    # A worker queued it in-line, its transaction committed, and the process died before running it.
    token = inline_jobs.CURRENT.set(InlineClaims("dead-worker", {"deliver"}))
    try:
        with session_factory.begin() as session:
            queue.enqueue(session, "deliver", {"invoice": "A"})
    finally:
        inline_jobs.CURRENT.reset(token)
    [held] = queue.list(kind="deliver")
    assert (held.state, held.locked_by, held.attempts) == (JobState.RUNNING, "dead-worker", 1)
    assert queue.claim("other-worker", 10) == []  # its lease holds it meanwhile
    clock.advance(queue.lease + timedelta(seconds=1))
    [taken] = queue.claim("other-worker", 10)
    assert (taken.kind, taken.payload, taken.attempts) == ("deliver", {"invoice": "A"}, 2)


def test_only_kinds_declared_inline_and_handled_by_the_worker_are_claimed_as_queued(session_factory):
    queue = _queue(session_factory)
    token = inline_jobs.CURRENT.set(InlineClaims("this-worker", {"grant"}))  # no handler for "deliver"
    try:
        with session_factory.begin() as session:
            queue.enqueue(session, "deliver", {})
            queue.enqueue(session, "grant", {})  # handled, but not an inline kind
    finally:
        inline_jobs.CURRENT.reset(token)
    assert {(j.kind, j.state) for j in queue.list()} == {("deliver", JobState.QUEUED), ("grant", JobState.QUEUED)}
