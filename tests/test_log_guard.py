"""The session's log guard (tests/log_guard.py) fails a run whose logs hold a bot token, and
names where: here a run of pytest of its own leaks tokens through paths the product's masking
never sees (a record written before masking could apply, a process printing to its output)."""

from __future__ import annotations

from pathlib import Path

LEAKY = '''
import logging
import subprocess
import sys

from telepay_sandbox.harness import kept_log
from telepay_sandbox.telegram import TelegramSandbox

TOKEN = TelegramSandbox(token="999:guard-test-token").token  # the sandbox notes the token it serves


def test_a_token_in_a_record_of_this_process():
    logging.getLogger("telepay.somewhere").warning("GET /bot%s/getMe failed", TOKEN)


def test_tokens_printed_by_a_process(tmp_path):
    log = kept_log(tmp_path / "run.log")
    with log.open("w") as out:
        shaped = "123456789:" + "AAH" * 10  # noted nowhere, found by its shape
        subprocess.run([sys.executable, "-c", f"print('start-up'); print('rejected {TOKEN} and {shaped}')"],
                       stdout=out, check=True)
    assert "rejected" in log.read_text()  # the test reads it where it asked for it
'''

CLEAN = '''
import logging

from telepay_sandbox.telegram import TelegramSandbox

TOKEN = TelegramSandbox(token="999:guard-test-token").token


def test_nothing_of_ours_logs_the_token():
    logging.getLogger("telepay.somewhere").warning("getMe failed for bot 999")
    # The emulator's request log stands for Telegram's side: the path names the token there.
    logging.getLogger("telepay_sandbox.telegram_server").warning("POST /bot%s/getMe 200", TOKEN)
'''


def _run(pytester, monkeypatch, repo_root: Path, source: str):
    monkeypatch.setenv("PYTHONPATH", str(repo_root))
    pytester.makepyfile(test_guarded=source)
    return pytester.runpytest_subprocess("-p", "tests.log_guard", "-q", "-p", "no:cacheprovider")


def test_a_token_in_any_log_fails_the_session_and_names_the_file_and_line(pytester, monkeypatch, repo_root):
    result = _run(pytester, monkeypatch, repo_root, LEAKY)
    result.assert_outcomes(passed=2)  # every test passed; the session did not
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*bot token found in a log*",
        "*/in-process.log:*: bot token 999:gua… (during test_guarded.py::test_a_token_in_a_record_of_this_process)",
        "*WARNING telepay.somewhere: GET /bot999:gua…/getMe failed",
        "*/test_guarded.py-test_tokens_printed_by_a_process-run.log-*.log:2: bot token 999:gua…",
        "    rejected 999:gua… and 123456789:AAH…",
        "*/test_guarded.py-test_tokens_printed_by_a_process-run.log-*.log:2: bot token 123456789:AAH…",
        "    rejected 999:gua… and 123456789:AAH…",
    ])
    assert "guard-test-token" not in result.stdout.str()  # the report names each token, never shows it


def test_a_session_whose_logs_hold_no_token_passes(pytester, monkeypatch, repo_root):
    result = _run(pytester, monkeypatch, repo_root, CLEAN)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["log guard: no bot token in the session's logs (*process-logs)"])
