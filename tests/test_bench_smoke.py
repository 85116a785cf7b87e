"""The benchmarks run (small) and print their figures: they must not rot between runs."""

from __future__ import annotations

from bench import webhooks


def test_webhooks_benchmark_runs_small(capsys, database_url):
    figures = webhooks.main(["--requests", "100", "--concurrency", "4"])
    assert figures["errors"] == 0 and figures["full_rps"] > 0 and figures["ratio"] > 0
    assert "ratio full/bare throughput" in capsys.readouterr().out
