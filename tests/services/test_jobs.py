"""The durable job queue on real PostgreSQL: dedupe, retries, dead jobs, concurrency, crashes."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from telepay.clock import ManualClock
from telepay.models import Job, JobState
from telepay.services.jobs import JobKind, JobQueue, JobRegistry, RetryPolicy


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def queue(session_factory, clock):
    return JobQueue(session_factory, clock=clock, lease=timedelta(seconds=30))


def test_enqueue_dedupes_on_kind_and_key(queue, session_factory):
    with session_factory.begin() as session:
        first = queue.enqueue(session, "ipn", {"p": 1}, dedupe_key="pay-1:finished")
        again = queue.enqueue(session, "ipn", {"p": 1}, dedupe_key="pay-1:finished")
        other_kind = queue.enqueue(session, "notify", {}, dedupe_key="pay-1:finished")
    assert first is not None and again is None and other_kind is not None
    with session_factory() as session:
        assert session.scalar(select(Job).where(Job.kind == "ipn")).payload == {"p": 1}


def test_enqueue_is_part_of_the_callers_transaction(queue, session_factory):
    with pytest.raises(RuntimeError):
        with session_factory.begin() as session:
            queue.enqueue(session, "ipn", {})
            raise RuntimeError("caller rolls back")
    assert queue.claim("w") == []


def test_claim_complete(queue, session_factory):
    with session_factory.begin() as session:
        queue.enqueue(session, "a", {"n": 1})
    [job] = queue.claim("w1")
    assert job.kind == "a" and job.attempts == 1
    assert queue.claim("w2") == []  # held
    assert queue.complete(job, "w1")
    assert queue.list(JobState.DONE)[0].id == job.id


def test_future_jobs_wait_for_their_time(queue, session_factory, clock):
    with session_factory.begin() as session:
        queue.enqueue(session, "later", {}, run_at=clock.now() + timedelta(minutes=5))
    assert queue.claim("w") == []
    clock.advance(timedelta(minutes=5, seconds=1))
    assert len(queue.claim("w")) == 1


def test_failures_retry_every_minute_then_die_after_a_day(queue, session_factory, clock):
    """The default policy: a retry 60 s after each failure (not before), and the failure whose
    retry would fall more than 24 h after the job was made is its last. Three minutes show the
    rhythm; then the clock jumps to the end of the day instead of failing 1,440 times."""
    with session_factory.begin() as session:
        queue.enqueue(session, "flaky", {})
    created = clock.now()

    def fail_once(error: str) -> JobState:
        [job] = queue.claim("w")
        return queue.fail(job, "w", error)

    for n in range(3):
        assert fail_once(f"boom {n}") == JobState.QUEUED
        clock.advance(timedelta(seconds=59))
        assert queue.claim("w") == []  # not before its retry time
        clock.advance(timedelta(seconds=1))
    clock.advance(timedelta(hours=24) - timedelta(minutes=3) - (clock.now() - created))
    assert fail_once("boom late") == JobState.QUEUED  # its retry, at 23:58, is inside the day
    clock.advance(timedelta(minutes=3))
    assert fail_once("boom final") == JobState.DEAD  # a retry at 24:01 would be past it
    [dead] = queue.list(JobState.DEAD)
    assert dead.last_error == "boom final" and dead.attempts == 5
    assert queue.claim("w") == []


def test_per_kind_policy(session_factory, clock):
    quick = JobKind("quick", lambda services, bot: None,
                    RetryPolicy(interval=timedelta(seconds=5), give_up_after=timedelta(seconds=12)))
    queue = JobQueue(session_factory, clock=clock, kinds=JobRegistry([quick]))
    with session_factory.begin() as session:
        queue.enqueue(session, "quick", {})
    states = []
    for _ in range(3):
        [job] = queue.claim("w")
        states.append(queue.fail(job, "w", "no"))
        clock.advance(timedelta(seconds=5))
    assert states == [JobState.QUEUED, JobState.QUEUED, JobState.DEAD]


def test_retry_and_cancel_by_hand(queue, session_factory, clock):
    with session_factory.begin() as session:
        job_id = queue.enqueue(session, "x", {})
    queue.cancel(job_id)
    assert queue.claim("w") == []
    queue.retry(job_id)
    [job] = queue.claim("w")
    with pytest.raises(ValueError):
        queue.cancel(job.id)  # running jobs are not cancelled under a worker's feet


def test_stale_claim_of_a_crashed_worker_is_taken_back(queue, session_factory, clock):
    with session_factory.begin() as session:
        queue.enqueue(session, "x", {})
    [crashed] = queue.claim("dead-worker")
    assert queue.claim("w2") == []
    clock.advance(timedelta(seconds=31))
    [again] = queue.claim("w2")
    assert again.id == crashed.id and again.attempts == 2
    # The crashed worker coming back late cannot complete or fail what it no longer holds.
    assert not queue.complete(crashed, "dead-worker")
    assert queue.fail(crashed, "dead-worker", "late") is None
    assert queue.complete(again, "w2")


def test_release_gives_the_job_back_without_spending_an_attempt(queue, session_factory):
    with session_factory.begin() as session:
        queue.enqueue(session, "x", {})
    [job] = queue.claim("w1")
    assert queue.release(job, "w1")
    [again] = queue.claim("w2")
    assert again.attempts == 1


@pytest.mark.slow  # threads racing over many jobs
def test_concurrent_workers_never_run_a_job_twice_and_lose_none(queue, session_factory):
    total = 400
    with session_factory.begin() as session:
        for n in range(total):
            queue.enqueue(session, "work", {"n": n})
    runs: Counter[int] = Counter()
    active: set[int] = set()
    overlap = []
    lock = threading.Lock()

    def worker(name):
        while True:
            jobs = queue.claim(name, limit=3)
            if not jobs:
                return
            for job in jobs:
                with lock:
                    if job.id in active:
                        overlap.append(job.id)
                    active.add(job.id)
                    runs[job.payload["n"]] += 1
                with lock:
                    active.discard(job.id)
                assert queue.complete(job, name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap
    assert sorted(runs) == list(range(total))
    assert set(runs.values()) == {1}
    assert len(queue.list(JobState.DONE, limit=1000)) == total


def test_crash_mid_batch_then_recovery_runs_every_job_once_more_at_most(queue, session_factory, clock):
    with session_factory.begin() as session:
        for n in range(20):
            queue.enqueue(session, "work", {"n": n})
    done = []
    # Worker A claims 10 and "crashes" after completing 4 of them.
    claimed = queue.claim("A", limit=10)
    for job in claimed[:4]:
        queue.complete(job, "A")
        done.append(job.payload["n"])
    # Worker B drains what is free; A's leftovers come back once the lease runs out.
    clock.advance(timedelta(seconds=31))
    while jobs := queue.claim("B", limit=5):
        for job in jobs:
            queue.complete(job, "B")
            done.append(job.payload["n"])
    assert sorted(done) == list(range(20))


def test_depth_counts_by_kind_and_state(queue, session_factory):
    with session_factory.begin() as session:
        queue.enqueue(session, "a", {})
        queue.enqueue(session, "a", {})
        queue.enqueue(session, "b", {})
    queue.claim("w", kinds=["b"])
    assert queue.depth() == {"a": {"queued": 2}, "b": {"running": 1}}
