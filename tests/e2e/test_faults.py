"""Faults injected into a real `telepay run`: it notices, says so, and recovers alone.

Each test starts the process exactly as an operator would and breaks one thing for real: the
sandbox Telegram answers 401, a scratch PostgreSQL of our own is frozen with SIGSTOP or is not
up yet at start, a SIGTERM lands while the process is still starting.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from telepay.bot.start import WELCOME
from telepay_sandbox.harness import TelepayProcess, keep_output, kept_log
from telepay_sandbox.waiting import until
from tests.e2e.faults import (
    OPS, TOKEN, Outage, env_for, metric, scrape, server_pids, signal_all, status, wait_for_log,
)


def test_polling_survives_a_401_and_answers_again(telegram, database_url, session_factory, tmp_path):
    process = TelepayProcess(env_for(telegram, tmp_path, database_url=database_url), tmp_path / "run.log")
    try:
        process.start()
        telegram.fail_next("getUpdates", 401, "Unauthorized", count=2)
        wait_for_log(process, "polling has stopped", timeout=30)
        alice = telegram.create_user("Alice", username="alice")
        alice.send("/start")  # sent while nobody polls
        # Restarted after 5 s (refused again), then after 10 s more: answered, once.
        assert alice.wait_for_message(timeout=45).text == WELCOME
        time.sleep(2)  # a doubled answer would have come by now
        assert [m.text for m in alice.messages()] == [WELCOME]
        code, _ = process.stop()
        assert code == 0
    finally:
        process.kill()
    log = process.log()
    assert "Aborting retry loop" in log  # PTB gave up on its own loop: ours restarted it
    assert TOKEN not in log


def test_a_token_refused_for_minutes_is_down_alerted_by_webhook_then_each_update_is_answered_once(
        telegram, receiver, database_url, session_factory, tmp_path):
    """Telegram refuses the token (a revoked or rotated one: every call answered 401) for longer
    than /status tolerates. The Telegram channel cannot carry that alert (the bot is what is
    refused): the webhook does, and /status shows the Telegram send owed."""
    operator = telegram.create_user("Olga", username="olga_ops")
    operator.send("/start")
    outage = Outage(telegram.base_url.removesuffix("/bot"), 401,
                    b'{"ok":false,"error_code":401,"description":"Unauthorized"}')
    env = env_for(telegram, tmp_path, database_url=database_url, TELEGRAM_API_BASE_URL=outage.url + "/bot",
                  ALERT_WEBHOOK_URL=receiver.url, ALERT_CHECK_SECONDS="1", OPERATOR_TOKEN=OPS,
                  ADMIN_CHAT_IDS=str(operator.id))
    process = TelepayProcess(env, tmp_path / "run.log")
    try:
        process.start()
        assert operator.wait_for_message(timeout=30).text == WELCOME  # polling works
        outage.down = True
        revoked = time.monotonic()
        # The long poll under way when the token went is answered normally; write once getUpdates
        # itself is refused. (An update fetched just before, whose reply is refused, is not answered.)
        until(lambda: any(path.endswith("/getUpdates") for path in outage.refused_paths), "getUpdates refused",
              timeout=30)
        people = [telegram.create_user(name) for name in ("Alice", "Bob")]
        for person in people:
            person.send("/start")  # written during the outage
        alert, arrived = receiver.firing("polling", timeout=180)
        assert alert["level"] == "down" and "refuses the bot token" in alert["text"]
        code, body = status(process)
        assert code == 503 and body["checks"]["polling"]["level"] == "down"
        assert "polling via telegram" in body["checks"]["alerts"]["reason"]  # owed, retried, not dropped
        scraped = scrape(process)
        assert metric(scraped, "telepay_poll_seconds_since_success") > 90
        assert metric(scraped, "telepay_poll_restarts_total") >= 1
        assert metric(scraped, "telepay_check_level", 'check="polling"') == 2

        outage.down = False  # Telegram takes the token again
        restored = time.monotonic()
        # Picked up at the supervisor's next try: its backoff doubles from 5 s (to 5 min), so after
        # ~100 s of refusals the next try is up to ~80 s away. (A new token needs a restart anyway.)
        for person in people:
            assert person.wait_for_message(timeout=150).text == WELCOME
        answered = time.monotonic() - restored
        receiver.wait_for(lambda b: b["alert"] == "polling" and b["status"] == "resolved", timeout=60)
        operator.wait_for_message(lambda m: "resolved: polling" in (m.text or ""), timeout=60)
        time.sleep(2)  # a doubled answer would have come by now
        assert all([m.text for m in person.messages()] == [WELCOME] for person in people)
        assert process.stop()[0] == 0
    finally:
        process.kill()
        outage.close()
    assert TOKEN not in process.log()
    print(f"\n401 for minutes: webhook alert {arrived - revoked:.1f} s after the token was refused; "
          f"updates from the outage answered {answered:.1f} s after it ended")


def test_start_waits_for_a_database_that_is_not_up_yet(telegram, own_server, tmp_path):
    url, pg_dir = own_server
    pids = server_pids(pg_dir)
    signal_all(pids, signal.SIGSTOP)
    process = TelepayProcess(env_for(telegram, tmp_path, database_url=url, DB_CONNECT_TIMEOUT_SECONDS="1",
                                     DB_STARTUP_WAIT_SECONDS="90"), tmp_path / "run.log")

    alice = telegram.create_user("Alice")

    def thaw_once_it_waits():  # the database comes up only after the process has found it down
        wait_for_log(process, "database not reachable yet", timeout=90)
        alice.send("/start")  # someone writes to the bot while it waits
        time.sleep(3)
        thawed.append(time.monotonic())
        signal_all(pids, signal.SIGCONT)

    thawed: list[float] = []
    thaw = threading.Thread(target=thaw_once_it_waits, daemon=True)
    try:
        thaw.start()
        process.start(wait_seconds=120)
        ready_after = time.monotonic() - thawed[0]
        thaw.join()
        assert alice.wait_for_message(timeout=30).text == WELCOME  # nothing lost while it waited
        time.sleep(2)
        assert [m.text for m in alice.messages()] == [WELCOME]
        code, _ = process.stop()
        assert code == 0
    finally:
        signal_all(pids, signal.SIGCONT)
        process.kill()
    assert "database answered after" in process.log()
    print(f"\ndatabase down at start: /health answered {ready_after:.1f} s after the database came up")


def test_start_gives_up_clearly_when_the_database_stays_away(telegram, tmp_path):
    env = env_for(telegram, tmp_path, database_url="postgresql+pg8000://postgres@127.0.0.1:9/none",
                  DB_STARTUP_WAIT_SECONDS="3", LOG_FORMAT="json")
    result = TelepayProcess(env, tmp_path / "run.log").telepay("run", timeout=60)
    assert result.returncode == 1
    import json

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]  # every line JSON
    assert lines[-1]["level"] == "CRITICAL" and "did not answer within 3 s" in lines[-1]["message"]
    # Repeats of the same warning are collapsed: one line, however many attempts.
    assert sum("database not reachable yet" in line["message"] for line in lines) == 1


def test_sigterm_while_waiting_for_the_database_exits_0(telegram, own_server, tmp_path):
    url, pg_dir = own_server
    pids = server_pids(pg_dir)
    signal_all(pids, signal.SIGSTOP)
    env = env_for(telegram, tmp_path, database_url=url, DB_CONNECT_TIMEOUT_SECONDS="1")
    log_path = kept_log(tmp_path / "run.log")
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "telepay", "run"], env=env, cwd=tmp_path,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "database not reachable yet" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        signal_all(pids, signal.SIGCONT)
    output = log_path.read_text()
    assert "database not reachable yet" in output
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_sigterm_while_the_embedded_server_starts_leaves_no_server_behind(telegram):
    # Not pytest's 0700 temporary tree: the embedded server runs as its own user and must enter it.
    tmp_path = Path(tempfile.mkdtemp(prefix="telepay-sigterm-"))
    tmp_path.chmod(0o755)
    env = env_for(telegram, tmp_path)  # no DATABASE_URL: the embedded server in tmp_path/pg
    proc = subprocess.Popen([sys.executable, "-m", "telepay", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = tmp_path / "pg" / "postmaster.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "the embedded server never started"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    keep_output("run", output)
    assert proc.returncode == 0, output
    postmasters = subprocess.run(["pgrep", "-f", f"postgres -D {tmp_path / 'pg'}"],
                                 capture_output=True, text=True).stdout.split()
    assert postmasters == [], output
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_systemd_hears_ready_then_the_watchdog_and_status_names_a_second_poller(telegram, database_url,
                                                                                 session_factory, tmp_path):
    import socket

    import httpx

    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(0.5)
    heard: list[str] = []

    def listen():  # as systemd does: read every datagram as it comes
        while notify.fileno() != -1:
            try:
                heard.append(notify.recv(4096).decode())
            except (TimeoutError, OSError):
                continue

    threading.Thread(target=listen, daemon=True).start()
    env = env_for(telegram, tmp_path, database_url=database_url, NOTIFY_SOCKET=str(sock_path),
                  WATCHDOG_USEC="2000000", OPERATOR_TOKEN="ops-token", ADMIN_CHAT_IDS="42")
    process = TelepayProcess(env, tmp_path / "run.log")
    try:
        process.start()
        deadline = time.monotonic() + 30
        while len(heard) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert heard[0].startswith("READY=1") and heard[1:3] == ["WATCHDOG=1", "WATCHDOG=1"]

        # Another process polls with our token: Telegram answers 409 to one of the two.
        telegram.fail_next("getUpdates", 409, "Conflict: terminated by other getUpdates request; "
                           "make sure that only one bot instance is running", count=2)
        conflict = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = httpx.get(process.base_url + "/status", headers={"Authorization": "Bearer ops-token"},
                             timeout=10).json()
            if body["checks"]["polling"]["level"] == "degraded":
                break
            time.sleep(0.5)
        assert body["status"] == "degraded" and "another process is polling" in body["checks"]["polling"]["reason"]
        seen_after = time.monotonic() - conflict
        assert body["version"]
        bob = telegram.create_user("Bob")
        bob.send("/start")  # written while the two pollers fight: answered once, by us
        assert bob.wait_for_message(timeout=60).text == WELCOME
        time.sleep(2)
        assert [m.text for m in bob.messages()] == [WELCOME]

        code, _ = process.stop()
        assert code == 0
        time.sleep(1)
        assert heard[-1] == "STOPPING=1"
    finally:
        process.kill()
        notify.close()
    print(f"\nsecond poller: /status degraded {seen_after:.1f} s after the first 409")


def test_no_payouts_leaves_payout_jobs_queued_and_the_rest_running(telegram, database_url, session_factory, tmp_path):
    import httpx

    from telepay.models import Job, JobState
    from telepay.services.jobs import JobQueue
    from telepay.services.payouts.engine import PAYOUT_JOB

    with session_factory.begin() as session:
        job_id = JobQueue(session_factory).enqueue(session, PAYOUT_JOB, {"payout_id": 1, "step": "start"},
                                                   dedupe_key="no-payouts")
    env = env_for(telegram, tmp_path, database_url=database_url)
    log_path = kept_log(tmp_path / "run.log")
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "telepay", "run", "--no-payouts"], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{env['HTTP_PORT']}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        alice = telegram.create_user("Alice")
        alice.send("/start")
        assert alice.wait_for_message(timeout=20).text == WELCOME  # the bot works
        time.sleep(2)  # several worker turns
        with session_factory() as session:
            assert session.get(Job, job_id).state == JobState.QUEUED  # the payout waits
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert "payouts paused (--no-payouts)" in log_path.read_text()
