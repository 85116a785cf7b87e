"""The log: secrets masked in every line (library loggers and tracebacks included), repeats
collapsed, ids as fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from decimal import Decimal

import pytest

from telepay.api.app import close_app
from telepay.logs import JsonFormatter, MaskingFormatter, RepeatFilter, TextFormatter, log_context, make_handler
from telepay.services.jobs import JobQueue
from telepay.services.worker import Worker

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


@pytest.fixture
def json_log():
    """The product's own root handler (JSON, context ids, masking) writing to a buffer, at INFO."""
    stream = io.StringIO()
    handler = make_handler("json", stream=stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def entries() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield entries
    root.removeHandler(handler)
    root.setLevel(level)


def test_context_ids_become_fields_explicit_ones_win_and_they_end_with_the_block(json_log):
    logger = logging.getLogger("telepay.test_logs")
    with log_context(payment_id="p-9", invoice_id=None):
        with log_context(user_id=42):
            logger.info("inner")
            logger.info("explicit", extra={"user_id": 7})
        logger.info("outer")
    logger.info("outside")
    inner, explicit, outer, outside = json_log()
    assert (inner["payment_id"], inner["user_id"]) == ("p-9", 42) and "invoice_id" not in inner
    assert explicit["user_id"] == 7
    assert outer["payment_id"] == "p-9" and "user_id" not in outer
    assert not {"payment_id", "user_id"} & set(outside)


def test_a_jobs_lines_carry_its_ids_as_fields_down_into_threads(session_factory, json_log):
    """A job's lines, its handler's and its failure's, name the job and the payment in its
    payload: a NOWPayments payment is named by their id, as `payments show` takes it."""
    queue = JobQueue(session_factory)

    async def process(job):
        await asyncio.to_thread(logging.getLogger("telepay.services.payments.processor").info, "applied")
        raise RuntimeError("no such chat")

    async def scenario():
        worker = Worker(queue, {"payment.process": process}, poll_seconds=0.05)
        worker.start()
        with session_factory.begin() as session:
            job_id = queue.enqueue(session, "payment.process", {"provider_payment_id": "5077125051", "event_id": 3})
        for _ in range(200):
            if queue.list(kind="payment.process")[0].attempts:
                break
            await asyncio.sleep(0.05)
        await worker.stop()
        return job_id

    job_id = asyncio.run(asyncio.wait_for(scenario(), 20))
    lines = [e for e in json_log() if e.get("job_id") == job_id]
    assert [e["message"][:40] for e in lines] == ["applied", f"job {job_id} (payment.process) raised",
                                                  f"job {job_id} (payment.process) attempt 1 failed"[:40]]
    assert all((e["job_kind"], e["payment_id"]) == ("payment.process", "5077125051") for e in lines)
    assert not any("job_id" in e for e in json_log() if e["message"].startswith("worker "))


def test_an_ipns_line_carries_its_payment_and_invoice(engine, session_factory, json_log):
    from tests.api.conftest import ipn_body, make_app, post_ipn

    from telepay.models import Channel, Invoice, InvoiceKind, Tier

    with session_factory.begin() as session:
        channel = Channel(key="logs1", owner_user_id=1001, open_chat_id=-1001, closed_chat_id=-1002,
                          open_title="Open", closed_title="Closed")
        channel.tiers.append(Tier(number=1, price_usd=Decimal("15.00"), days=30))
        session.add(channel)
        session.flush()
        invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                          tier_id=channel.tiers[0].id, buyer_user_id=2002, price_usd=Decimal("15.00"), days=30)
        session.add(invoice)
    client = make_app(engine).test_client()
    try:
        assert post_ipn(client, ipn_body(invoice.id, payment_id=6100200300)).status_code == 200
        assert post_ipn(client, ipn_body(invoice.id, payment_id=6100200300)).json == {"status": "duplicate"}
    finally:
        close_app(client.application)
    lines = [e for e in json_log() if e["message"].startswith("IPN ")]
    assert [e["message"].split(":")[0] for e in lines] == ["IPN accepted", "IPN repeat"]
    assert all((e["payment_id"], e["invoice_id"]) == ("6100200300", invoice.id) for e in lines)


def test_a_bot_updates_lines_carry_its_user_and_chat(json_log):
    """PTB runs each update's handlers inside the update processor: the ids set there are on
    what the handlers log, and gone once the update is handled."""
    from telegram import Update

    from telepay.bot.updates import PerUserUpdateProcessor

    update = Update.de_json({"update_id": 1, "message": {
        "message_id": 5, "date": 0, "text": "/start",
        "chat": {"id": 4242, "type": "private"}, "from": {"id": 4242, "is_bot": False, "first_name": "A"}}}, None)
    logger = logging.getLogger("telepay.bot.start")

    async def handlers():
        await asyncio.to_thread(logger.info, "welcomed")

    async def scenario():
        processor = PerUserUpdateProcessor()
        await processor.process_update(update, handlers())
        logger.info("after")

    asyncio.run(scenario())
    welcomed, after = json_log()
    assert (welcomed["user_id"], welcomed["chat_id"]) == (4242, 4242)
    assert "user_id" not in after


def test_a_failing_job_logs_its_ids_as_fields(capture):
    """The worker's failure line carries the job's and its payload's ids, not only in the text."""
    from telepay.services.jobs import ClaimedJob

    _, _, stream = capture
    handler = make_handler("json", stream=stream)
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


def test_python_warnings_are_log_lines_too(monkeypatch):
    """A Python warning (a library's deprecation, say) is a JSON line, masked, not raw text
    among the JSON."""
    import sys
    import warnings

    from telepay.logs import configure_logging

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # Another test's configure_logging may have left logging capturing warnings under a
    # showwarning pytest has since put back; capturing again would then be a no-op. Start clean,
    # and show this warning whatever filters earlier tests set.
    logging.captureWarnings(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            configure_logging("json", "INFO", secrets=[TOKEN])
            warnings.warn(f"falling back for {TOKEN}", RuntimeWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        root.setLevel(level)
    [entry] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entry["logger"] == "py.warnings" and "RuntimeWarning: falling back for <secret>" in entry["message"]
