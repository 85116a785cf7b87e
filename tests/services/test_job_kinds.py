"""Job kinds in one registry: declared once, one enqueue path, jobs that run again in place,
finished jobs pruned by their kind's retention, one operator-alert path."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text
from telegram import Bot

from telepay.clock import ManualClock
from telepay.config import Settings
from telepay.models import Job, JobState
from telepay.services.jobs import JobKind, JobQueue, JobRegistry, RetryPolicy, RunAgain, insert_jobs_sql
from telepay.services.messages import ALERT_JOB, DIRECT_JOB, DirectMessenger, OperatorAlerter, alert_operators
from telepay.services.payouts.allocation import PAYOUT_JOB
from telepay.services.registry import JOB_KINDS
from telepay.services.worker import Worker
from telepay_sandbox.telegram import RateLimits, TelegramSandbox


@pytest.fixture
def clock():
    return ManualClock()


def test_every_kind_is_declared_once_with_its_policy_and_retention():
    names = set(JOB_KINDS.kinds)
    assert {"payment.process", "invite.send", "message.direct", ALERT_JOB, "notification.owner",
            "broadcast.post", "subscription.expire", "subscription.remind", PAYOUT_JOB} <= names
    assert JOB_KINDS.policy("subscription.expire").give_up_after == timedelta(days=30)
    assert JOB_KINDS.policy(PAYOUT_JOB).give_up_after == timedelta(days=7)
    assert JOB_KINDS.policy("no.such.kind") == RetryPolicy()
    assert JOB_KINDS.retention(DIRECT_JOB) == timedelta(days=90)
    with pytest.raises(ValueError, match="declared twice"):
        JobRegistry([JOB_KINDS.kinds[DIRECT_JOB], JOB_KINDS.kinds[DIRECT_JOB]])


def test_a_kind_whose_settings_are_absent_is_not_served(session_factory, clock):
    services = SimpleNamespace(session_factory=session_factory, clock=clock, jobs=JobQueue(session_factory, clock),
                               settings=Settings(admin_chat_ids=(1,)), payouts=None, payments=object(),
                               access=object())
    handlers = JOB_KINDS.handlers(services, Bot("1:x"))
    assert PAYOUT_JOB not in handlers and set(handlers) == set(JOB_KINDS.kinds) - {PAYOUT_JOB}


def test_a_statement_inserts_jobs_through_the_shared_fragment_with_dedupe(session_factory, clock):
    statement = text(insert_jobs_sql("SELECT CAST(:kind AS text), jsonb_build_object('n', n), 'k:' || n, "
                                     "CAST(:now AS timestamptz) FROM generate_series(1, 3) AS n", returning=True))
    with session_factory.begin() as session:
        first = session.execute(statement, {"kind": "fragment", "now": clock.now()}).scalars().all()
        again = session.execute(statement, {"kind": "fragment", "now": clock.now()}).scalars().all()
    assert len(first) == 3 and again == []
    [job] = JobQueue(session_factory, clock).claim("w", kinds=["fragment"])
    assert job.payload == {"n": 1} and job.attempts == 1


def test_a_job_that_runs_again_keeps_its_row_and_a_stale_claim_cannot_touch_it(session_factory, clock):
    queue = JobQueue(session_factory, clock=clock, lease=timedelta(seconds=30))
    with session_factory.begin() as session:
        job_id = queue.enqueue(session, "poll", {})
    [stale] = queue.claim("w1")
    clock.advance(timedelta(seconds=31))  # w1's lease runs out; w2 takes the job over
    [mine] = queue.claim("w1")  # the same worker id, as a restarted process on one host might have
    assert mine.id == stale.id == job_id
    assert queue.reschedule(mine, "w1", clock.now() + timedelta(seconds=30))
    assert not queue.complete(stale, "w1")  # the old run's result is refused
    clock.advance(timedelta(seconds=30))
    [again] = queue.claim("w1")
    assert again.id == job_id and again.attempts == 1  # a fresh count: the run before succeeded
    assert not queue.complete(stale, "w1") and not queue.reschedule(stale, "w1", clock.now())
    assert queue.complete(again, "w1")
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.kind == "poll")) == 1


def test_the_worker_reschedules_a_job_whose_handler_asks_to_run_again(session_factory, clock):
    queue = JobQueue(session_factory, clock=clock)
    runs = []

    async def waits_twice(job):
        runs.append(job.id)
        if len(runs) < 3:
            return RunAgain(clock.now())  # due at once: the worker picks it up on its next claim

    async def scenario():
        worker = Worker(queue, {"waits": waits_twice}, poll_seconds=0.05)
        worker.start()
        with session_factory.begin() as session:
            queue.enqueue(session, "waits", {})
        worker.wake()
        for _ in range(200):
            if queue.list(JobState.DONE, kind="waits"):
                break
            await asyncio.sleep(0.02)
        await worker.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert len(runs) == 3 and len(set(runs)) == 1
    [done] = queue.list(kind="waits")
    assert done.state == JobState.DONE


def test_prune_deletes_finished_jobs_past_their_kinds_retention_and_keeps_dead_ones(session_factory, clock):
    short = JobKind("short", lambda services, bot: None, retention=timedelta(days=1))
    queue = JobQueue(session_factory, clock=clock, kinds=JobRegistry([short]))
    with session_factory.begin() as session:
        for kind in ("short", "short", "other"):
            queue.enqueue(session, kind, {})
        queue.enqueue(session, "doomed", {})
    for job in queue.claim("w", limit=10):
        if job.kind == "doomed":
            queue.fail(job, "w", "x")
        else:
            queue.complete(job, "w")
    with session_factory.begin() as session:  # the dead one: past every retention, never pruned
        session.execute(text("UPDATE jobs SET state = 'dead', finished_at = :at WHERE kind = 'doomed'"),
                        {"at": clock.now()})
    clock.advance(timedelta(days=2))
    assert queue.prune() == 2  # the two short ones; "other" has the default 30 days
    assert sorted(j.kind for j in queue.list()) == ["doomed", "other"]
    clock.advance(timedelta(days=30))
    assert queue.prune() == 1
    assert [j.kind for j in queue.list()] == ["doomed"]


def test_operator_alerts_go_once_per_fact_to_every_operator_each_on_its_own_job(session_factory, clock):
    queue = JobQueue(session_factory, clock=clock)
    with session_factory.begin() as session:
        assert alert_operators(session, queue, "payout 7 needs review", key="payout-review:7") is not None
        assert alert_operators(session, queue, "payout 7 needs review", key="payout-review:7") is None
    with TelegramSandbox(token="77:alerts", rate_limits=RateLimits.off()) as telegram:
        admins = [telegram.create_user(f"Admin {n}") for n in range(2)]
        for admin in admins:
            admin.command("start")

        async def deliver():
            async with Bot("77:alerts", base_url=telegram.base_url) as bot:
                # 424242 never started the bot: Telegram refuses it, the others still get theirs.
                alerter = OperatorAlerter(session_factory, queue, tuple(a.id for a in admins) + (424242,))
                worker = Worker(queue, {ALERT_JOB: alerter, DIRECT_JOB: DirectMessenger(session_factory, bot)},
                                poll_seconds=0.05)
                worker.start()
                for _ in range(200):
                    if len(queue.list(JobState.DONE)) == 4:
                        break
                    await asyncio.sleep(0.02)
                await worker.stop()

        asyncio.run(asyncio.wait_for(deliver(), 20))
        for admin in admins:
            assert admin.wait_for_message(timeout=5).text == "🛎 TelePay: payout 7 needs review"
    direct = queue.list(kind=DIRECT_JOB)
    assert len(direct) == 3 and {j.state for j in direct} == {JobState.DONE}
    assert {j.dedupe_key for j in direct} == {f"operator:payout-review:7:{a.id}" for a in admins} | {
        "operator:payout-review:7:424242"}


def test_operator_alerts_reach_the_webhook_too_retried_until_accepted_and_messaged_once(session_factory, clock):
    """With ALERT_WEBHOOK_URL set, a service's alert is POSTed there as a `notice`; a refused POST
    fails the job (so the queue retries it and /status shows it), and the retry does not message
    the operators a second time."""
    import httpx

    from telepay.ops.webhook import WebhookChannel
    from tests.e2e.faults import Receiver

    receiver = Receiver()
    receiver.fail_next = 1
    queue = JobQueue(session_factory, clock=clock)
    alerter = OperatorAlerter(session_factory, queue, (11, 12), WebhookChannel(receiver.url))
    job = SimpleNamespace(id=5, payload={"text": "Refund after fulfilment: payment 9", "key": "refund:9"})
    try:
        with pytest.raises(httpx.HTTPStatusError):
            asyncio.run(alerter(job))
        assert receiver.received == []
        asyncio.run(alerter(job))
    finally:
        receiver.server.shutdown()
    [body] = receiver.received
    assert (body["status"], body["alert"], body["text"]) == ("notice", "refund:9", "Refund after fulfilment: payment 9")
    assert sorted(j.dedupe_key for j in queue.list(kind=DIRECT_JOB)) == ["operator:refund:9:11", "operator:refund:9:12"]

    # Webhook only, no operator chats: the alert still goes out, and nothing is queued for chats.
    receiver = Receiver()
    try:
        asyncio.run(OperatorAlerter(session_factory, queue, (), WebhookChannel(receiver.url))(
            SimpleNamespace(id=6, payload={"text": "IPNs refused", "key": "ipn-refusals:1"})))
    finally:
        receiver.server.shutdown()
    assert [b["alert"] for b in receiver.received] == ["ipn-refusals:1"]
