"""The shipped Prometheus files are valid: promtool (Debian's `prometheus` package) checks them.
Every alert rule uses only metric names TelePay exports."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed "
                                    "(apt-get install prometheus); rules not checked")


@needs_promtool
def test_rules_pass_promtool(repo_root):
    result = subprocess.run([PROMTOOL, "check", "rules", str(repo_root / "ops/alerts.rules.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_scrape_config_passes_promtool(repo_root, tmp_path):
    config = (repo_root / "ops/prometheus.yml").read_text()
    assert 'targets: ["127.0.0.1:9464"]' in config  # loopback, the default METRICS_PORT
    shutil.copy(repo_root / "ops/alerts.rules.yml", tmp_path / "telepay.rules.yml")
    # The rules where the install puts them, here in a temporary directory.
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/telepay.rules.yml", str(tmp_path / "telepay.rules.yml")))
    result = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_exported_metrics(repo_root):
    exported = set(re.findall(r'"(telepay_[a-z_0-9]+)"', (repo_root / "telepay/ops/metrics.py").read_text()))
    exported |= {"telepay_check_level", "telepay_status_level"}
    exprs = [line for line in (repo_root / "ops/alerts.rules.yml").read_text().splitlines()
             if line.strip().startswith("expr:")]
    used = {name for expr in exprs for name in re.findall(r"\btelepay_[a-z_0-9]+", expr)}
    assert used and used <= exported, used - exported
