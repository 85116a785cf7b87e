"""`telepay run` as a real subprocess against the sandbox Telegram: start, /start, /health, SIGTERM."""

from __future__ import annotations

import httpx
import pytest

from telepay.bot.start import WELCOME
from telepay_sandbox.harness import TelepayProcess, keep_output, sandbox_env
from telepay_sandbox.telegram import TelegramSandbox

TOKEN = "111:e2e-token"


@pytest.fixture
def telegram():
    with TelegramSandbox(token=TOKEN, bot_username="TelePayTestBot") as sandbox:
        yield sandbox


def test_run_answers_start_and_health_then_stops_cleanly(telegram, database_url, session_factory, tmp_path):
    env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                      data_dir=tmp_path, database_url=database_url)
    process = TelepayProcess(env, tmp_path / "telepay.log")
    try:
        process.start()
        assert httpx.get(process.base_url + "/health").json() == {"status": "ok"}

        alice = telegram.create_user("Alice", username="alice")
        alice.send("/start")
        reply = alice.wait_for_message(timeout=15)
        assert reply.text == WELCOME

        code, seconds = process.stop()
        assert code == 0, process.log()
        assert seconds < 10
        log = process.log()
        assert "Traceback" not in log
        assert TOKEN not in log  # the bot token must never reach the log
    finally:
        process.kill()


def test_run_refuses_a_database_behind_the_migrations(telegram, tmp_path, database_url):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    empty = url.set(database=url.database + "_empty")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{empty.database}"'))
    try:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                          data_dir=tmp_path, database_url=empty.render_as_string(hide_password=False))
        result = TelepayProcess(env, tmp_path / "log").telepay("run", timeout=60)
        assert result.returncode == 2
        assert "telepay db upgrade" in result.stderr
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{empty.database}" WITH (FORCE)'))
        admin.dispose()


def test_json_logs_when_asked(telegram, database_url, session_factory, tmp_path):
    import json

    env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                      data_dir=tmp_path, database_url=database_url, extra={"LOG_FORMAT": "json"})
    process = TelepayProcess(env, tmp_path / "telepay.log")
    try:
        process.start()
        code, _ = process.stop()
    finally:
        process.kill()
    assert code == 0
    entries = [json.loads(line) for line in process.log().splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any("telepay is running" in e["message"] for e in entries)


def test_sigterm_during_start_up_still_stops_cleanly(telegram, database_url, session_factory, tmp_path):
    import subprocess
    import sys
    import signal

    env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                      data_dir=tmp_path, database_url=database_url)
    proc = subprocess.Popen([sys.executable, "-m", "telepay", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        telegram.wait_for_call("getMe", timeout=30)  # start-up is under way, polling not yet
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    keep_output("run", output)
    assert proc.returncode == 0, output
    assert "Traceback" not in output
