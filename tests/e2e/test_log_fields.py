"""`telepay run` with LOG_FORMAT=json at DEBUG: every line JSON, a bot update's lines name its
user and chat as fields, and the token is in none of them (PTB logs its Bot API URL at DEBUG)."""

from __future__ import annotations

import json

from telepay.bot.start import WELCOME
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.telegram import TelegramSandbox

TOKEN = "111:e2e-log-fields-token"


def test_an_updates_lines_carry_its_user_and_chat_and_no_line_the_token(database_url, session_factory, tmp_path):
    with TelegramSandbox(token=TOKEN, bot_username="TelePayTestBot") as telegram:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="TelePayTestBot",
                          data_dir=tmp_path, database_url=database_url,
                          extra={"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"})
        process = TelepayProcess(env, tmp_path / "telepay.log")
        try:
            process.start()
            alice = telegram.create_user("Alice")
            alice.send("/start")
            assert alice.wait_for_message(timeout=20).text == WELCOME
            code, _ = process.stop()
        finally:
            process.kill()
    log = process.log()
    assert code == 0, log
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is JSON
    replies = [e for e in entries if "`sendMessage`" in e["message"]]
    assert replies and all((e.get("user_id"), e.get("chat_id")) == (alice.id, alice.id) for e in replies), replies
    assert any("Set Bot API URL" in e["message"] for e in entries)  # the line that would carry it
    assert TOKEN not in log and TOKEN.split(":")[1] not in log


def test_a_rejected_token_ends_start_up_in_json_lines_that_do_not_show_it(database_url, session_factory, tmp_path):
    """The fatal start-up error of a token Telegram refuses: exit 1, JSON to the last line, the
    traceback's message (PTB puts the token in it) masked."""
    rejected = "111:rejected-log-fields-token"
    with TelegramSandbox(token=TOKEN, bot_username="TelePayTestBot") as telegram:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=rejected, bot_username="TelePayTestBot",
                          data_dir=tmp_path, database_url=database_url,
                          extra={"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"})
        result = TelepayProcess(env, tmp_path / "telepay.log").telepay("run", timeout=90)
    assert result.returncode == 1, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]  # every line is JSON
    fatal = [e for e in entries if e["level"] == "CRITICAL"]
    assert fatal and "was rejected by the server" in fatal[-1]["exc_info"], entries[-3:]
    assert rejected not in result.stdout + result.stderr and "rejected-log-fields" not in result.stderr
