"""The log: secrets masked in every line (library loggers and tracebacks included), repeats
collapsed, ids as fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from telepay.logs import JsonFormatter, MaskingFormatter, RepeatFilter, TextFormatter

TOKEN = "123456:AAH-secret_token-value-0123456789abcdef"


@pytest.fixture
def capture():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, handler, stream
    logger.handlers[:] = []


def test_the_bot_token_is_masked_in_messages_urls_and_tracebacks(capture):
    logger, handler, stream = capture
    handler.setFormatter(MaskingFormatter(TextFormatter(), secrets=[TOKEN, "ipn-secret-value"]))
    logger.debug("HTTP Request: POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    logger.info("some other token 987654321:ZZZ-not-ours-but-shaped-like-one-xyz")
    try:
        raise RuntimeError(f"rejected {TOKEN} and ipn-secret-value")
    except RuntimeError:
        logger.exception("start-up failed")
    out = stream.getvalue()
    assert TOKEN not in out and "ipn-secret-value" not in out and "ZZZ-not-ours" not in out
    assert out.count("<secret>") >= 3 and "<bot-token>" in out


def test_json_lines_carry_ids_as_fields(capture):
    logger, handler, stream = capture
    handler.setFormatter(MaskingFormatter(JsonFormatter(), secrets=[TOKEN]))
    logger.warning("payout failed", extra={"payout_id": 7, "payment_id": "p-1", "user_id": 42})
    entry = json.loads(stream.getvalue())
    assert entry["payout_id"] == 7 and entry["payment_id"] == "p-1" and entry["user_id"] == 42


def test_repeated_warnings_are_written_once_per_interval_with_a_count(capture):
    logger, handler, stream = capture
    now = [0.0]
    handler.addFilter(RepeatFilter(interval=60, clock=lambda: now[0]))
    handler.setFormatter(logging.Formatter("%(message)s"))
    for attempt in range(3200):  # a database outage: every loop fails the same way
        now[0] = attempt * 0.00625  # 3,200 in 20 s
        logger.warning("worker could not claim jobs (attempt %d)", attempt)
    logger.info("info lines are never held back")
    now[0] = 61.0
    logger.warning("worker could not claim jobs (attempt %d)", 3200)
    lines = stream.getvalue().splitlines()
    assert lines == ["worker could not claim jobs (attempt 0)", "info lines are never held back",
                     "worker could not claim jobs (attempt 3200) [3199 more like this in the last 60 s]"]


def test_a_failing_job_logs_its_ids_as_fields(capture):
    """The worker's failure line carries the job's and its payload's ids, not only in the text."""
    import asyncio

    from telepay.services.jobs import ClaimedJob
    from telepay.services.worker import Worker

    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter())
    worker_logger = logging.getLogger("telepay.services.worker")
    worker_logger.handlers[:] = [handler]
    worker_logger.propagate = False

    class Queue:
        def fail(self, *args):
            return None

    async def explode(job):
        raise RuntimeError("no such chat")

    job = ClaimedJob.__new__(ClaimedJob)
    for name, value in {"id": 17, "kind": "access.invite", "payload": {"payment_id": 5, "user_id": 42},
                        "attempts": 1}.items():
        object.__setattr__(job, name, value)
    try:
        asyncio.run(Worker(Queue(), {"access.invite": explode})._execute(job))
    finally:
        worker_logger.handlers[:] = []
        worker_logger.propagate = True
    entry = json.loads(stream.getvalue().splitlines()[0])
    assert (entry["job_id"], entry["job_kind"], entry["payment_id"], entry["user_id"]) == (17, "access.invite", 5, 42)
