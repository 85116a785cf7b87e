"""The job worker: asyncio tasks on the bot's loop that claim durable jobs and run handlers.

Database calls are blocking (pg8000), so they run in threads; handlers are coroutines that
may call Telegram or other clients. `wake()` is safe from any thread: the API thread calls it
after committing a job so the worker does not wait for its next poll. A job of an `inline` kind
queued by a running job (a payment's invite) is run by the same worker right after that job's
transaction commits, without a trip through the queue (`telepay.services.inline_jobs`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import traceback
import uuid
from typing import Callable

from telepay.logs import log_context
from telepay.services import inline_jobs
from telepay.services.inline_jobs import InlineClaims
from telepay.services.jobs import ClaimedJob, Handler, JobQueue, RunAgain

logger = logging.getLogger(__name__)

__all__ = ["Handler", "Worker", "make_worker_id"]


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _ids(payload: dict) -> dict:
    """The ids a job's payload names, as log fields (telepay.logs.ID_FIELDS). A NOWPayments
    payment is named by their id, which `telepay payments show` takes as well as ours."""
    if not isinstance(payload, dict):
        return {}
    ids = {k: payload[k] for k in ("payment_id", "invoice_id", "payout_id", "subscription_id", "user_id", "chat_id")
           if k in payload}
    if "payment_id" not in ids and "provider_payment_id" in payload:
        ids["payment_id"] = payload["provider_payment_id"]
    return ids


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: dict[str, Handler],
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        poll_seconds: float = 1.0,
        beat: Callable[[], None] = lambda: None,
    ):
        self.queue = queue
        self.handlers = handlers
        self.worker_id = worker_id or make_worker_id()
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.beat = beat  # called every turn of the loop: health and the systemd watchdog watch it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._running: dict[asyncio.Task, ClaimedJob] = {}
        self._full = False  # asleep with every slot taken: a job that ends wakes it
        self._main: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._main = asyncio.create_task(self._run(), name="telepay-worker")
        return self._main

    def wake(self) -> None:
        """Ask the worker to look for jobs now. Safe to call from any thread."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        logger.info("worker %s started", self.worker_id)
        while not self._stopping:
            self.beat()
            # Cleared before the claim, not after it: a wake-up that comes while the claim is in
            # flight (an IPN committed after the claim's snapshot) makes the loop look again at
            # once instead of being lost until the next poll.
            self._wake.clear()
            free = self.concurrency - len(self._running)
            claimed: list[ClaimedJob] = []
            if free > 0:
                try:
                    claimed = await asyncio.to_thread(self.queue.claim, self.worker_id, free, self.handlers.keys())
                except Exception:
                    logger.exception("worker could not claim jobs; retrying")
            for job in claimed:
                task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
                self._running[task] = job
                task.add_done_callback(self._finished)
            if len(claimed) == free and free > 0:
                await asyncio.sleep(0)  # there may be more: look again at once
                continue
            # Asleep until a producer wakes it (the API, a timer, a bot handler, a job that queued
            # jobs), the poll, or, when every slot was taken, a slot coming free. A job that ends
            # does not wake it otherwise: each needless claim cost a thread and a transaction,
            # which on a busy machine the next sale's steps waited for.
            self._full = free <= 0
            if self._stopping:  # `stop` came during the claim above
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    def _finished(self, task: asyncio.Task) -> None:
        self._running.pop(task, None)
        if self._full:
            self._wake.set()

    async def _execute(self, job: ClaimedJob) -> None:
        # The task is the job's own: every line logged for it, down in the handler, names it.
        with log_context(job_id=job.id, job_kind=job.kind, **_ids(job.payload)):
            await self._run_handler(job)

    async def _run_handler(self, job: ClaimedJob) -> None:
        handler = self.handlers[job.kind]
        # What the handler queues of an `inline` kind is claimed for this worker as it is queued.
        claims = InlineClaims(self.worker_id, self.handlers.keys())
        token = inline_jobs.CURRENT.set(claims)
        try:
            outcome = await handler(job)
        except asyncio.CancelledError:
            # Shutdown interrupted the handler: give the job back for another run.
            await asyncio.to_thread(self.queue.release, job, self.worker_id)
            await self._release(claims.take())
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job
            logger.warning("job %s (%s) raised", job.id, job.kind, exc_info=True)
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            await asyncio.to_thread(self.queue.fail, job, self.worker_id, error)
            await self._run_inline(claims.take())  # committed before the failure: theirs to do
            if claims.queued:
                self._wake.set()
        else:
            try:
                # First what the handler claimed in-line (a payment's invite), then wake the loop
                # for what it queued for anyone (the owner's notice): the invite gets the cores.
                await self._run_inline(claims.take())
            finally:
                if claims.queued:
                    self._wake.set()  # (claimed while this job is marked done)
                if isinstance(outcome, RunAgain):
                    await asyncio.to_thread(self.queue.reschedule, job, self.worker_id, outcome.at)
                    self._wake.set()  # it may be due already
                else:
                    await asyncio.to_thread(self.queue.complete, job, self.worker_id)
        finally:
            inline_jobs.CURRENT.reset(token)

    async def _run_inline(self, jobs: list[ClaimedJob]) -> None:
        """Run jobs claimed as they were queued, one after another, as if claimed from the queue."""
        for n, job in enumerate(jobs):
            try:
                await self._execute(job)
            except asyncio.CancelledError:
                await self._release(jobs[n + 1:])  # (the interrupted one released itself)
                raise

    async def _release(self, jobs: list[ClaimedJob]) -> None:
        for job in jobs:
            await asyncio.to_thread(self.queue.release, job, self.worker_id)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming, let running jobs finish within the grace time, release the rest."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._main is not None:
            await self._main
        running = list(self._running)
        if running:
            done, pending = await asyncio.wait(running, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        logger.info("worker %s stopped", self.worker_id)
