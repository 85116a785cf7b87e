"""Settings: required names, Secret Manager paths, .env files, masking."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from telepay.config import REQUIRED_FOR_RUN, ConfigError, load_settings, read_env_file


class FakeSecrets:
    def __init__(self, values):
        self.values = values
        self.asked = []

    def access(self, path):
        self.asked.append(path)
        return self.values[path]


def test_missing_required_settings_are_all_named():
    settings = load_settings({}, env_file=None)
    with pytest.raises(ConfigError) as caught:
        settings.require()
    assert caught.value.names == list(REQUIRED_FOR_RUN)
    for name in REQUIRED_FOR_RUN:
        assert name in str(caught.value)


def test_secret_manager_paths_are_resolved_plain_values_are_not():
    path = "projects/telepay-prod/secrets/bot-token/versions/3"
    secrets = FakeSecrets({path: "123:resolved-token"})
    settings = load_settings(
        {"TELEGRAM_BOT_TOKEN": path, "NOWPAYMENTS_API_KEY": "plain-key",
         "WEBHOOK_SIGNING_SECRET": "projects/x/secrets"},  # not a full version path: used as given
        env_file=None,
        secret_client_factory=lambda: secrets,
    )
    assert settings.telegram_bot_token == "123:resolved-token"
    assert settings.nowpayments_api_key == "plain-key"
    assert settings.webhook_signing_secret == "projects/x/secrets"
    assert secrets.asked == [path]


def test_no_secret_client_is_made_when_nothing_names_a_secret():
    def explode():
        raise AssertionError("secret client created without need")

    load_settings({"TELEGRAM_BOT_TOKEN": "t"}, env_file=None, secret_client_factory=explode)


def test_env_file_is_read_and_environment_wins(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nexport HTTP_PORT=9000\nTELEGRAM_BOT_USERNAME='file_bot'\nPLATFORM_FEE_PERCENT=7.5\n\n")
    settings = load_settings({"TELEGRAM_BOT_USERNAME": "env_bot"}, env_file=env)
    assert settings.http_port == 9000
    assert settings.telegram_bot_username == "env_bot"
    assert settings.platform_fee_percent == Decimal("7.5")


@pytest.mark.parametrize("name,value", [("HTTP_PORT", "eighty"), ("PLATFORM_FEE_PERCENT", "ten"),
                                        ("ADMIN_CHAT_IDS", "1,two"), ("LOG_FORMAT", "xml")])
def test_malformed_values_name_the_setting(name, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, env_file=None)
    assert name in str(caught.value)


def test_bad_env_file_line(tmp_path):
    env = tmp_path / ".env"
    env.write_text("JUSTAWORD\n")
    with pytest.raises(ConfigError):
        read_env_file(env)


def test_masked_view_hides_every_secret():
    settings = load_settings({"TELEGRAM_BOT_TOKEN": "123:s3cr3tval", "NOWPAYMENTS_IPN_SECRET": "ipn-s3cr3tval",
                              "DATABASE_URL": "postgresql://u:s3cr3tval@h/db", "ADMIN_CHAT_IDS": "1, 2"},
                             env_file=None)
    shown = "\n".join(f"{k}={v}" for k, v in settings.masked().items())
    assert "s3cr3tval" not in shown
    assert "TELEGRAM_BOT_TOKEN=****** (set)" in shown and "ADMIN_CHAT_IDS=1,2" in shown
    assert "s3cr3tval" not in repr(settings)


def test_env_example_documents_every_setting(repo_root):
    from telepay.config import _ATTR

    documented = read_env_file(repo_root / ".env.example")
    assert set(_ATTR) <= set(documented) | {k for k in _ATTR if f"# {k}=" in (repo_root / ".env.example").read_text()}


def test_telepay_run_exits_2_listing_every_missing_name(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "telepay", "run"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    for name in REQUIRED_FOR_RUN:
        assert name in result.stderr


def test_stars_settings_parse_and_refuse_nonsense():
    from telepay.config import ConfigError, load_settings

    defaults = load_settings(environ={}, env_file=None)
    assert (defaults.stars_usd_rate, defaults.stars_payout_hold_days, defaults.stars_only) == (
        Decimal("0.013"), 21, False)
    strict = load_settings(environ={"STARS_ONLY": "true", "STARS_USD_RATE": "0.02"}, env_file=None)
    assert strict.stars_only is True and strict.stars_usd_rate == Decimal("0.02")
    for bad in ({"STARS_ONLY": "maybe"}, {"STARS_USD_RATE": "0"}, {"STARS_PAYOUT_HOLD_DAYS": "-1"}):
        with pytest.raises(ConfigError) as caught:
            load_settings(environ=bad, env_file=None)
        assert caught.value.names == list(bad)
