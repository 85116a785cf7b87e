"""The asyncio worker over the real job table: runs, retries, wakes, stops cleanly."""

from __future__ import annotations

import asyncio
import threading
import time

from telepay.clock import ManualClock
from telepay.models import JobState
from telepay.services.jobs import JobQueue
from telepay.services.worker import Worker
from telepay_sandbox.waiting import until_async


def test_worker_runs_jobs_records_failures_and_is_woken_from_another_thread(session_factory):
    clock = ManualClock()
    queue = JobQueue(session_factory, clock=clock)
    seen = []

    async def ok(job):
        seen.append(job.payload["n"])

    async def broken(job):
        raise ValueError("provider said no")

    async def scenario():
        worker = Worker(queue, {"ok": ok, "broken": broken}, poll_seconds=30)
        worker.start()
        with session_factory.begin() as session:
            queue.enqueue(session, "ok", {"n": 1})
            queue.enqueue(session, "broken", {})
            queue.enqueue(session, "unknown", {})  # no handler here: left for another worker
        # Poll is 30 s: only the wake-up from another thread can make this fast.
        threading.Thread(target=worker.wake).start()
        for _ in range(100):
            if seen and queue.list(JobState.QUEUED, kind="broken"):
                failed = queue.list(kind="broken")[0]
                if failed.attempts == 1 and failed.state == JobState.QUEUED:
                    break
            await asyncio.sleep(0.05)
        await worker.stop()
        return worker

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert seen == [1]
    [failed] = queue.list(kind="broken")
    assert failed.state == JobState.QUEUED and "provider said no" in failed.last_error
    assert queue.list(kind="unknown")[0].state == JobState.QUEUED


def test_stop_releases_a_job_that_does_not_finish_in_the_grace_time(session_factory):
    queue = JobQueue(session_factory)

    async def scenario():
        began = asyncio.Event()

        async def slow(job):
            began.set()
            await asyncio.sleep(60)

        worker = Worker(queue, {"slow": slow}, poll_seconds=0.05)
        with session_factory.begin() as session:
            queue.enqueue(session, "slow", {})
        worker.start()
        await asyncio.wait_for(began.wait(), 10)
        await worker.stop(grace_seconds=0.2)

    asyncio.run(asyncio.wait_for(scenario(), 20))
    [job] = queue.list()
    assert job.state == JobState.QUEUED and job.attempts == 0 and job.locked_by is None


def test_a_stop_during_a_claim_is_not_slept_through(session_factory):
    """`stop` while the worker is claiming: its wake-up comes before the worker clears the flag
    to wait for the next poll, and must still stop it at once, not after a whole poll."""
    claiming, release = threading.Event(), threading.Event()

    class SlowClaims(JobQueue):
        def claim(self, *args, **kwargs):
            claiming.set()
            release.wait(10)
            return super().claim(*args, **kwargs)

    async def scenario():
        worker = Worker(SlowClaims(session_factory), {"ok": lambda job: asyncio.sleep(0)}, poll_seconds=30)
        worker.start()
        await asyncio.to_thread(claiming.wait, 10)
        stopping = asyncio.create_task(worker.stop())
        await asyncio.sleep(0.2)  # stop has asked, the claim is still under way
        release.set()
        started = time.monotonic()
        await stopping
        return time.monotonic() - started

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) < 10


def test_a_wake_up_during_a_claim_that_missed_the_new_job_is_not_lost(session_factory):
    """The job is committed (and the worker woken) after the claim's snapshot: the claim returns
    nothing, and the loop must look again at once, not at its next poll (30 s here)."""
    queue = JobQueue(session_factory)
    ran = []
    claims = []
    claim = queue.claim

    async def scenario():
        worker = Worker(queue, {"ok": ok}, poll_seconds=30)

        def claim_then_a_job_arrives(*args, **kwargs):
            found = claim(*args, **kwargs)
            claims.append(len(found))
            if len(claims) == 2:  # (the first claim ran at start; this one follows a wake-up)
                with session_factory.begin() as session:
                    queue.enqueue(session, "ok", {"n": 2})
                worker.wake()
            return found

        queue.claim = claim_then_a_job_arrives
        worker.start()
        await asyncio.sleep(0.2)
        worker.wake()
        for _ in range(250):
            if ran:
                break
            await asyncio.sleep(0.02)
        await worker.stop()

    async def ok(job):
        ran.append(job.payload["n"])

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert ran == [2] and claims[:2] == [0, 0]


def test_the_worker_looks_for_jobs_when_there_may_be_some_not_after_every_job(session_factory):
    """A job that queued another wakes the worker; a job that ends otherwise does not make it
    claim again (a thread and a transaction each, for nothing). Poll: 30 s, so only wake-ups
    can make this quick."""
    queue = JobQueue(session_factory)
    ran, claims = [], []
    claim = queue.claim
    queue.claim = lambda *args, **kwargs: claims.append(args[1]) or claim(*args, **kwargs)

    async def plain(job):
        ran.append(job.payload["n"])

    def follow_up(n):
        with session_factory.begin() as session:
            queue.enqueue(session, "plain", {"n": n})

    async def queues_one(job):
        ran.append(job.payload["n"])
        await asyncio.to_thread(follow_up, job.payload["n"] + 1)

    async def scenario():
        worker = Worker(queue, {"plain": plain, "queues": queues_one}, concurrency=4, poll_seconds=30)
        worker.start()
        await asyncio.sleep(0.3)
        before = len(claims)
        with session_factory.begin() as session:
            for n in (1, 2):
                queue.enqueue(session, "plain", {"n": n})
        worker.wake()
        await until_async(lambda: len(ran) == 2, "two jobs ran")
        await asyncio.sleep(0.3)
        plain_claims = len(claims) - before
        with session_factory.begin() as session:
            queue.enqueue(session, "queues", {"n": 10})
        worker.wake()
        await until_async(lambda: len(ran) == 4, "four jobs ran")
        await asyncio.sleep(0.3)
        await worker.stop()
        return plain_claims, len(claims) - before - plain_claims

    plain_claims, follow_up_claims = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert sorted(ran) == [1, 2, 10, 11]
    assert plain_claims == 1  # the wake-up's; none when the two jobs ended
    assert follow_up_claims == 2  # the wake-up's, then the follow-up's (its job woke the loop)


def test_a_slot_coming_free_wakes_a_worker_that_had_every_slot_taken(session_factory):
    queue = JobQueue(session_factory)
    ran = []

    async def plain(job):
        ran.append(job.payload["n"])

    async def scenario():
        worker = Worker(queue, {"plain": plain}, concurrency=1, poll_seconds=30)
        with session_factory.begin() as session:
            for n in (1, 2, 3):
                queue.enqueue(session, "plain", {"n": n})
        worker.start()
        await until_async(lambda: len(ran) == 3, "three jobs ran")
        await worker.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert ran == [1, 2, 3]
