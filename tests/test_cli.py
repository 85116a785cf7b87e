"""Operator commands against the real database: check-config, db, jobs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from telepay.services.jobs import JobQueue
from telepay_sandbox.harness import keep_output, note_token


def _telepay(tmp_path, *args, **env):
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TELEPAY_DATA_DIR": str(tmp_path / "var")}
    note_token(env.get("TELEGRAM_BOT_TOKEN"))
    result = subprocess.run([sys.executable, "-m", "telepay", *args], cwd=tmp_path, env={**base, **env},
                            capture_output=True, text=True, timeout=120)
    keep_output("telepay-" + "-".join(args[:2]), result.stdout + result.stderr)  # for the session's log guard
    return result


def test_check_config_masks_secrets_and_tests_the_database(tmp_path, database_url):
    result = _telepay(tmp_path, "check-config", DATABASE_URL=database_url, TELEGRAM_BOT_TOKEN="123:tok-s3cr3t",
                      TELEGRAM_BOT_USERNAME="bot", WEBHOOK_SIGNING_SECRET="w-s3cr3t",
                      NOWPAYMENTS_API_KEY="k-s3cr3t", NOWPAYMENTS_IPN_SECRET="i-s3cr3t",
                      PUBLIC_BASE_URL="https://pay.example.com", CHANGENOW_API_KEY="c-s3cr3t",
                      ETH_RPC_URL="http://127.0.0.1:8545", HOST_WALLET_PRIVATE_KEY="0x" + "5e" * 32,
                      USDT_CONTRACT_ADDRESS="0xdAC17F958D2ee523a2206206994597C13D831ec7")
    assert result.returncode == 0, result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr and "5e5e5e" not in result.stdout + result.stderr
    assert "TELEGRAM_BOT_TOKEN           ****** (set)" in result.stdout
    assert "reachable" in result.stdout and "configuration OK" in result.stdout


def test_check_config_reports_missing_settings_with_exit_2(tmp_path, database_url):
    result = _telepay(tmp_path, "check-config", DATABASE_URL=database_url)
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr and "NOWPAYMENTS_IPN_SECRET" in result.stderr


def test_check_config_reports_an_unreachable_database(tmp_path):
    result = _telepay(tmp_path, "check-config", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1 and "NOT reachable" in result.stderr


def test_db_current(tmp_path, database_url):
    result = _telepay(tmp_path, "db", "current", DATABASE_URL=database_url)
    assert result.returncode == 0 and "database: " in result.stdout


@pytest.mark.slow  # the CLI as subprocesses, many times
def test_jobs_list_retry_cancel(tmp_path, database_url, session_factory):
    queue = JobQueue(session_factory)
    with session_factory.begin() as session:
        job_id = queue.enqueue(session, "example.kind", {"n": 1})
    listed = _telepay(tmp_path, "jobs", "list", DATABASE_URL=database_url)
    assert "example.kind: queued 1" in listed.stdout
    cancelled = _telepay(tmp_path, "jobs", "cancel", str(job_id), DATABASE_URL=database_url)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    retried = _telepay(tmp_path, "jobs", "retry", str(job_id), DATABASE_URL=database_url)
    assert retried.returncode == 0 and "queued" in retried.stdout
    missing = _telepay(tmp_path, "jobs", "retry", "999999", DATABASE_URL=database_url)
    assert missing.returncode == 1 and "no job 999999" in missing.stderr
