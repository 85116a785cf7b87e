"""The benchmarks run (small) and print their figures: they must not rot between runs."""

from __future__ import annotations

from bench import expiry, webhooks


def test_webhooks_benchmark_runs_small(capsys, database_url):
    figures = webhooks.main(["--requests", "100", "--concurrency", "4"])
    assert figures["errors"] == 0 and figures["full_rps"] > 0 and figures["ratio"] > 0
    assert "ratio full/bare throughput" in capsys.readouterr().out


def test_expiry_benchmark_runs_small(capsys, database_url):
    figures = expiry.main(["--subscriptions", "5000", "--due", "60", "--batch", "25"])
    assert figures["not_done"] == 0 and figures["removals"] == 60 and figures["unique_users_told"] == 60
    assert figures["batches"] == 3 and figures["rate_ratio"] > 0
    assert "removals 60" in capsys.readouterr().out
