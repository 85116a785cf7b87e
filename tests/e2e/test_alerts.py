"""Alerts from a running `telepay run` reach a loopback webhook receiver and the operators'
Telegram chat within seconds: firing, retried while the receiver fails, resolved when the
condition ends; "database unreachable" gets out while the database is frozen."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from sqlalchemy import update

from telepay.models import Job, JobState
from telepay.services.jobs import JobQueue
from telepay_sandbox.harness import TelepayProcess
from telepay_sandbox.telegram import TelegramSandbox
from tests.e2e.faults import TOKEN, env_for, freeze, signal_all


def test_a_dead_job_alerts_both_channels_is_retried_and_resolves(telegram, receiver, database_url, session_factory,
                                                                  tmp_path):
    operator = telegram.create_user("Olga", username="olga_ops")
    operator.send("/start")
    env = env_for(telegram, tmp_path, database_url=database_url, ALERT_WEBHOOK_URL=receiver.url,
                  ALERT_CHECK_SECONDS="1", ADMIN_CHAT_IDS=str(operator.id), OPERATOR_TOKEN="ops")
    process = TelepayProcess(env, tmp_path / "run.log")
    try:
        process.start()
        receiver.fail_next = 2  # the receiver is down for a moment: the alert must still arrive
        jobs = JobQueue(session_factory)
        with session_factory.begin() as session:
            # A kind no worker claims, so only the test moves it: dead, as after a day of retries.
            job_id = jobs.enqueue(session, "ops.test.dead", {}, dedupe_key="x")
        with session_factory.begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state=JobState.DEAD, last_error="Forbidden"))
        injected = time.monotonic()
        firing = receiver.wait_for(lambda b: b["alert"] == "dead_jobs" and b["status"] == "firing", timeout=30)
        seconds_to_webhook = time.monotonic() - injected
        assert "telepay jobs retry" in firing["text"] and firing["level"] == "degraded"
        message = operator.wait_for_message(lambda m: "dead_jobs" in (m.text or ""), timeout=30)
        assert "dead job" in message.text

        with session_factory.begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state=JobState.CANCELLED))
        receiver.wait_for(lambda b: b["alert"] == "dead_jobs" and b["status"] == "resolved", timeout=30)
        operator.wait_for_message(lambda m: "resolved: dead_jobs" in (m.text or ""), timeout=30)
        assert sum(b["alert"] == "dead_jobs" and b["status"] == "firing" for b in receiver.received) == 1
        code, _ = process.stop()
        assert code == 0
    finally:
        process.kill()
    assert seconds_to_webhook < 20
    print(f"\ndead job: webhook alert {seconds_to_webhook:.1f} s after it died (the receiver failing twice first)")
    assert "could not be sent by webhook, will retry" in process.log()
    assert TOKEN not in process.log()


def test_database_unreachable_gets_out_while_the_database_is_frozen(telegram, receiver, own_server, tmp_path):
    url, pg_dir = own_server
    env = env_for(telegram, tmp_path, database_url=url, ALERT_WEBHOOK_URL=receiver.url, ALERT_CHECK_SECONDS="1",
                  DB_CONNECT_TIMEOUT_SECONDS="1", DB_STATEMENT_TIMEOUT_SECONDS="2", OPERATOR_TOKEN="ops")
    process = TelepayProcess(env, tmp_path / "run.log")
    pids = []
    try:
        process.start()
        pids = freeze(pg_dir)
        frozen = time.monotonic()
        down = receiver.wait_for(lambda b: b["alert"] == "database" and b["status"] == "firing", timeout=30)
        seconds_to_alert = time.monotonic() - frozen
        status = httpx.get(process.base_url + "/status", headers={"Authorization": "Bearer ops"}, timeout=10)
        assert status.status_code == 503 and status.json()["checks"]["database"]["level"] == "down"
        signal_all(pids, signal.SIGCONT)
        receiver.wait_for(lambda b: b["alert"] == "database" and b["status"] == "resolved", timeout=60)
        assert httpx.get(process.base_url + "/status", headers={"Authorization": "Bearer ops"},
                         timeout=10).status_code == 200
        code, _ = process.stop()
        assert code == 0
    finally:
        signal_all(pids, signal.SIGCONT)
        process.kill()
    assert down["level"] == "down" and seconds_to_alert < 15
    print(f"\nhung database: down alert {seconds_to_alert:.1f} s after the freeze")


def test_alerts_test_reports_each_channel(telegram, receiver, tmp_path):
    operator = telegram.create_user("Olga", username="olga_ops")
    operator.send("/start")
    stranger = telegram.create_user("Nobody")  # never started the bot: Telegram refuses to write
    env = env_for(telegram, tmp_path, ALERT_WEBHOOK_URL=receiver.url, ADMIN_CHAT_IDS=str(operator.id))
    ok = TelepayProcess(env, tmp_path / "log").telepay("alerts", "test", timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.split() == ["telegram", "OK", "webhook", "OK"]
    assert receiver.received[-1]["alert"] == "test"
    assert "test alert" in operator.wait_for_message(timeout=10).text

    env["ADMIN_CHAT_IDS"] = f"{operator.id},{stranger.id}"
    receiver.fail_next = 1
    bad = TelepayProcess(env, tmp_path / "log").telepay("alerts", "test", timeout=60)
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("telegram") and f"chat {stranger.id}" in lines[0] and "FAIL" in lines[0]
    assert lines[1].startswith("webhook") and "FAIL" in lines[1] and "503" in lines[1]


def test_a_host_wallet_below_the_margin_is_alerted_and_a_payout_waits_then_pays_once_after_a_top_up(
        receiver, database_url, session_factory, tmp_path):
    from decimal import Decimal

    from eth_account import Account

    from telepay.clock import ManualClock
    from telepay.models import PayoutStatus
    from telepay_sandbox.chain import DevChain
    from telepay_sandbox.changenow import ChangeNowSandbox
    from telepay_sandbox.harness import sandbox_env
    from telepay_sandbox.waiting import until
    from tests.services.payouts.conftest import KEY, World

    empty_key = "0x31b69b129d5abc293150727133d1516b2187153907fb53ddc8159a8c30dd0b4f"  # holds nothing
    with DevChain() as chain, TelegramSandbox(token=TOKEN, bot_username="TelePayTestBot") as telegram, \
            ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None, step_seconds=0.5) as changenow:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                          data_dir=tmp_path, database_url=database_url, changenow_base_url=changenow.base_url,
                          chain_env={**chain.env(), "HOST_WALLET_PRIVATE_KEY": empty_key},
                          extra={"ALERT_WEBHOOK_URL": receiver.url, "ALERT_CHECK_SECONDS": "1",
                                 "OPERATOR_TOKEN": "ops", "ADMIN_CHAT_IDS": "1", "PAYOUT_POLL_SECONDS": "0.3"})
        process = TelepayProcess(env, tmp_path / "run.log")
        world = World(session_factory, chain, changenow, ManualClock())
        changenow.add_api_key(KEY)
        try:
            process.start()
            started = time.monotonic()
            low = receiver.wait_for(lambda b: b["alert"] == "host_wallet" and b["status"] == "firing", timeout=60)
            alerted = time.monotonic() - started
            assert "low on ETH" in low["text"] and "telepay wallet" in low["text"]
            body = httpx.get(process.base_url + "/status", headers={"Authorization": "Bearer ops"}, timeout=10).json()
            wallet = body["checks"]["host_wallet"]
            assert wallet["level"] == "degraded" and wallet["data"]["eth_usd"] == "0.00"

            # An owner's payout meanwhile: it cannot be funded, so it waits (and the service says so).
            owner = world.channel("usdt", "eth")
            payout = world.payout_of(world.pay(owner, Decimal("50")))
            short = receiver.wait_for(lambda b: b["status"] == "notice" and "short of ETH" in b["text"], timeout=60)
            assert f"payout {payout.id}" in short["text"]
            assert world.payout(payout.id).status != PayoutStatus.FINISHED

            chain.fund_eth(Account.from_key(empty_key).address, Decimal("10"))  # the operator tops it up
            topped = time.monotonic()
            until(lambda: world.payout(payout.id).status == PayoutStatus.FINISHED, "the payout", timeout=120)
            paid_after = time.monotonic() - topped
            done = world.payout(payout.id)
            assert len(world.chain_txs(payout.id)) == 1
            assert len(chain.transfers_to(done.payin_address, "eth")) == 1
            assert len(chain.transfers_to(owner.payout_address, "usdt")) == 1
            code, _ = process.stop()
            assert code == 0
        finally:
            process.kill()
            world.client.close()
    print(f"\nhost wallet low: alert {alerted:.1f} s after start; payout paid {paid_after:.1f} s after the top-up")


def test_a_filling_disk_under_the_embedded_database_is_down_alerted_and_resolves(receiver, tmp_path):
    """The embedded database on a small filesystem of its own (a 300 MiB tmpfs); a file fills it
    to under 100 MiB free: /status says down (503), the webhook hears the alert escalate from
    degraded to down at once; freed: back to degraded and 200."""
    import subprocess
    import tempfile
    from pathlib import Path

    mount = Path(tempfile.mkdtemp(prefix="telepay-disk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m,mode=0755", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        mount.rmdir()
        pytest.skip("cannot mount a tmpfs here (needs root); the full-disk fault is not injected")
    try:
        with TelegramSandbox(token=TOKEN, bot_username="TelePayTestBot") as telegram:
            env = env_for(telegram, mount, ALERT_WEBHOOK_URL=receiver.url, ALERT_CHECK_SECONDS="1",
                          OPERATOR_TOKEN="ops")  # no DATABASE_URL: the embedded server in mount/pg
            process = TelepayProcess(env, tmp_path / "run.log", cwd=tmp_path)
            try:
                migrated = process.telepay("db", "upgrade", timeout=120)
                assert migrated.returncode == 0, migrated.stderr
                process.start(wait_seconds=120)
                free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
                filler = mount / "filler"
                with filler.open("wb") as f:
                    f.truncate(0)
                    f.write(b"\0" * (free - (60 << 20)))  # leave 60 MiB
                filled = time.monotonic()
                # 300 MiB is already under the 1 GiB of `degraded`; the alert escalates at once to down.
                down = receiver.wait_for(lambda b: b["alert"] == "disk" and b["status"] == "firing"
                                         and b["level"] == "down", timeout=30)
                assert "MiB free" in down["text"]
                alerted = time.monotonic() - filled
                status = httpx.get(process.base_url + "/status", headers={"Authorization": "Bearer ops"}, timeout=10)
                assert status.status_code == 503 and status.json()["checks"]["disk"]["level"] == "down"
                filler.unlink()
                freed = time.monotonic()
                # Freed: no longer down (a 300 MiB filesystem stays under the 1 GiB of `degraded`).
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    status = httpx.get(process.base_url + "/status", headers={"Authorization": "Bearer ops"},
                                       timeout=10)
                    if status.status_code == 200:
                        break
                    time.sleep(0.5)
                assert status.status_code == 200 and status.json()["checks"]["disk"]["level"] == "degraded"
                print(f"\nfull disk: down alert {alerted:.1f} s after the fill; /status 200 again "
                      f"{time.monotonic() - freed:.1f} s after freeing it")
                # The embedded server's shutdown checkpoint follows a disk that was full: on a busy
                # two-core machine it has been seen to take longer than the usual 15 s.
                code, _ = process.stop(timeout=60)
                assert code == 0
            finally:
                process.kill()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        mount.rmdir()
