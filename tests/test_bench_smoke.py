"""The benchmarks run (small) and print their figures: they must not rot between runs."""

from __future__ import annotations

import pytest

from bench import broadcast, concurrency, expiry, ipn_to_invite, keypad, memory, money_path, webhooks

# Each runs a benchmark end to end, small.
pytestmark = pytest.mark.slow


def test_webhooks_benchmark_runs_small(capsys, database_url):
    figures = webhooks.main(["--requests", "100", "--concurrency", "4", "--rounds", "2"])
    assert figures["errors"] == 0 and figures["full_rps"] > 0 and figures["ratio"] > 0
    out = capsys.readouterr().out
    assert "ratio full/bare throughput" in out and "goal >= 300 IPN/s with p99 < 50 ms" in out


def test_expiry_benchmark_runs_small(capsys, database_url):
    figures = expiry.main(["--subscriptions", "5000", "--due", "60", "--batch", "25"])
    assert figures["not_done"] == 0 and figures["removals"] == 60 and figures["unique_users_told"] == 60
    assert figures["batches"] == 3 and figures["rate_ratio"] > 0
    assert "removals 60" in capsys.readouterr().out


def test_keypad_benchmark_runs_small(capsys, database_url):
    figures = keypad.main(["--donors", "2", "--presses", "4", "--warmup", "2", "--runs", "1"])
    assert figures["bare_rate"] > 0 and figures["telepay_rate"] > 0 and figures["sandbox_errors"] == []
    assert "ratio telepay/bare presses per second" in capsys.readouterr().out


def test_broadcast_benchmark_runs_small(capsys, database_url):
    figures = broadcast.main(["--channels", "10"])
    assert figures["posts"] == figures["expected"] == 20 and figures["lost"] == 0
    assert figures["retried_429s"] == figures["429s"] and figures["jobs"] == {"done": 10}
    assert "ratio allowed time / taken time" in capsys.readouterr().out


def test_memory_benchmark_runs_small(capsys, database_url):
    figures = memory.main(["--ipns", "100", "--idle-seconds", "1"])
    assert figures["ipn_errors"] == 0 and 0 < figures["bare_mb"] < figures["idle_mb"] <= figures["peak_mb"]
    assert "goal < 200 MB" in capsys.readouterr().out


def test_ipn_to_invite_benchmark_runs_small(capsys, database_url):
    figures = ipn_to_invite.main(["--payments", "3", "--warmup", "1"])
    assert figures["p50_ms"] > 0 and figures["round_trip_p50_ms"] > 0 and figures["sandbox_errors"] == []
    assert "accepted -> invite message sent" in capsys.readouterr().out


def test_concurrency_benchmark_runs_small(capsys, database_url):
    figures = concurrency.main(["--buyers", "3", "--users", "2", "--starts", "2", "--delay", "1"])
    assert figures["sandbox_errors"] == [] and figures["fast"]["p99_ms"] > 0 and figures["slow"]["p99_ms"] > 0
    assert "ratio slow/fast /start p99" in capsys.readouterr().out


def test_money_path_benchmark_runs_small(capsys, database_url):
    [figures] = money_path.main(["--payments", "2", "--workers", "1"])
    assert figures["payments"] == 2 and figures["invites_s"] > 0 and figures["payouts_s"] > 0
    assert "1 worker(s): all invites in" in capsys.readouterr().out
