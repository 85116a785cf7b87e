"""`telepay run --roles`: the bot poller is one process per token (a second one is refused), and
the roles split over processes still serve people: the bot answers in one process while a
worker without the bot or the API delivers the jobs another process's API queued."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from telepay.bot.start import WELCOME
from telepay.models import Channel, ChannelStatus, PayoutStrategy
from telepay.security.signing import signature_headers
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.telegram import TelegramSandbox

TOKEN = "444:roles-e2e"
BOT = "TelePayRolesBot"

pytestmark = pytest.mark.e2e


@pytest.fixture
def telegram():
    with TelegramSandbox(token=TOKEN, bot_username=BOT) as sandbox:
        yield sandbox


def _env(telegram, database_url, tmp_path, name):
    return sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT,
                       data_dir=tmp_path / name, database_url=database_url,
                       extra={"ALLOWED_IPS": "127.0.0.1/32", "WORKER_POLL_SECONDS": "0.2"})


def test_a_second_bot_poller_is_refused_while_the_first_polls(telegram, database_url, session_factory, tmp_path):
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = TelepayProcess(_env(telegram, database_url, tmp_path, "first"), tmp_path / "first.log")
    try:
        first.start()
        second = TelepayProcess(_env(telegram, database_url, tmp_path, "second"), tmp_path / "second.log")
        refused = second.telepay("run", "--roles", "worker,bot", timeout=60)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "another `telepay run` with the bot role is polling" in refused.stderr
        assert TOKEN not in refused.stdout + refused.stderr
        code, _ = first.stop()
        assert code == 0, first.log()
        # The lock went with the first process: a new poller may start.
        second.start()
        assert second.stop()[0] == 0, second.log()
    finally:
        first.kill()


def test_roles_split_over_processes_serve_people(telegram, database_url, session_factory, tmp_path):
    for name in ("front", "worker"):
        (tmp_path / name).mkdir()
    front = TelepayProcess(_env(telegram, database_url, tmp_path, "front"), tmp_path / "front.log", roles="bot,api")
    worker = TelepayProcess(_env(telegram, database_url, tmp_path, "worker"), tmp_path / "worker.log",
                            roles="worker")
    owner = telegram.create_user("Olga", username="olga")
    with session_factory.begin() as session:
        channel = Channel(key="rolese2e1", owner_user_id=owner.id, open_chat_id=-1001, closed_chat_id=-1002,
                          open_title="Roles News", closed_title="Roles VIP", status=ChannelStatus.ACTIVE,
                          payout_currency="usdt", payout_network="trx",
                          payout_address="TJRabPrwbZy45sbavfcjinPJC18kjpRTv8",
                          payout_strategy=PayoutStrategy.THRESHOLD, payout_threshold_usd=Decimal("100"))
        session.add(channel)
        session.flush()
        channel_id = channel.id
    try:
        front.start()
        worker.start()
        owner.send("/start")
        assert owner.wait_for_message(timeout=15).text == WELCOME  # the bot, in the front process

        # The front's API queues the job; only the worker process (no bot, no API) can deliver it.
        body = json.dumps({"channel_id": channel_id, "text": "Hello from the API"}).encode()
        response = httpx.post(front.base_url + "/webhooks/notification", content=body,
                              headers={"Content-Type": "application/json",
                                       **signature_headers("sandbox-webhook-signing-secret", body, method="POST",
                                                           path="/webhooks/notification")})
        assert response.status_code == 202, response.text
        owner.wait_for_message(lambda m: "Hello from the API" in m.text, timeout=15)
        for process in (front, worker):
            code, _ = process.stop()
            assert code == 0, process.log()
            assert "Traceback" not in process.log()
        # Each process ran only its roles: the job could only have run in the worker process.
        assert "worker " not in front.log() and "telepay is running (bot,api) as @" + BOT in front.log()
        assert "telepay is running (worker) as @" + BOT in worker.log() and "bot lock taken" not in worker.log()
    finally:
        front.kill()
        worker.kill()
