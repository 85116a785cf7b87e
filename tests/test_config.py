"""Settings: required names, Secret Manager paths, .env files, masking, and every bad value
refused at start through the real CLI with exit 2, its name and what it allows."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from telepay.cli import main
from telepay.config import ENV_NAMES, REQUIRED_FOR_RUN, SECRET_NAMES, ConfigError
from telepay.config_load import load_settings, lookalike_names, masked, read_env_file
from telepay_sandbox.harness import keep_output, note_token

USDT = "0xdAC17F958D2ee523a2206206994597C13D831ec7"  # mainnet USDT, checksummed


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
    key_path = "projects/telepay-prod/secrets/host-key/versions/latest"
    key = "0x" + "ab" * 32
    secrets = FakeSecrets({path: "123:resolved-token", key_path: key + "\n"})
    settings = load_settings(
        {"TELEGRAM_BOT_TOKEN": path, "NOWPAYMENTS_API_KEY": "plain-key", "HOST_WALLET_PRIVATE_KEY": key_path,
         "WEBHOOK_SIGNING_SECRET": "projects/x/secrets"},  # not a full version path: used as given
        env_file=None,
        secret_client_factory=lambda: secrets,
    )
    assert settings.telegram_bot_token.get_secret_value() == "123:resolved-token"
    assert settings.nowpayments_api_key.get_secret_value() == "plain-key"
    assert settings.webhook_signing_secret.get_secret_value() == "projects/x/secrets"
    # Resolved before validation: the fetched key is what is checked (and its newline dropped).
    assert settings.host_wallet_private_key.get_secret_value() == key
    assert secrets.asked == [path, key_path]


def test_a_resolved_secret_is_validated_too():
    path = "projects/p/secrets/host-key/versions/1"
    with pytest.raises(ConfigError) as caught:
        load_settings({"HOST_WALLET_PRIVATE_KEY": path}, env_file=None,
                      secret_client_factory=lambda: FakeSecrets({path: "not-a-key"}))
    assert caught.value.names == ["HOST_WALLET_PRIVATE_KEY"] and "not-a-key" not in str(caught.value)


def test_no_secret_client_is_made_when_nothing_names_a_secret():
    def explode():
        raise AssertionError("secret client created without need")

    load_settings({"TELEGRAM_BOT_TOKEN": "t"}, env_file=None, secret_client_factory=explode)


def test_secrets_are_secret_types():
    assert SECRET_NAMES == {"TELEGRAM_BOT_TOKEN", "DATABASE_URL", "DATABASE_PASSWORD", "WEBHOOK_SIGNING_SECRET",
                            "NOWPAYMENTS_API_KEY", "NOWPAYMENTS_IPN_SECRET", "CHANGENOW_API_KEY",
                            "HOST_WALLET_PRIVATE_KEY", "OPERATOR_TOKEN", "NOWPAYMENTS_PASSWORD",
                            "WEBHOOK_SIGNING_SECRET_PREVIOUS", "NOWPAYMENTS_IPN_SECRET_PREVIOUS"}
    settings = load_settings({name: "postgresql://u:p@h/db" if name == "DATABASE_URL" else
                              "0x" + "11" * 32 if name == "HOST_WALLET_PRIVATE_KEY" else "x"
                              for name in SECRET_NAMES}, env_file=None)
    for name in SECRET_NAMES:
        assert isinstance(getattr(settings, ENV_NAMES[name]), SecretStr), name


def test_env_file_is_read_and_environment_wins(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nexport HTTP_PORT=9000\nTELEGRAM_BOT_USERNAME='file_bot'\nPLATFORM_FEE_PERCENT=7.5\n"
                   "DATABASE_PASSWORD=pa$word\nLOG_LEVEL=\n\n")
    settings = load_settings({"TELEGRAM_BOT_USERNAME": "env_bot"}, env_file=env)
    assert settings.http_port == 9000
    assert settings.telegram_bot_username == "env_bot"
    assert settings.platform_fee_percent == Decimal("7.5")
    assert settings.database_password.get_secret_value() == "pa$word"  # taken literally, not expanded
    assert settings.log_level == "INFO"  # empty means the default


def test_lists_and_words_are_read_leniently():
    settings = load_settings({"ADMIN_CHAT_IDS": "1, -1002", "ALLOWED_IPS": "10.0.0.0/8, ::1", "LOG_LEVEL": "debug",
                              "LOG_FORMAT": "JSON", "NOWPAYMENTS_IPN_IPS": "any",
                              "USDT_CONTRACT_ADDRESS": USDT.lower()},
                             env_file=None)
    assert settings.admin_chat_ids == (1, -1002) and settings.allowed_ips == ("10.0.0.0/8", "::1")
    assert (settings.log_level, settings.log_format, settings.nowpayments_ipn_ips) == ("DEBUG", "json", ("any",))


def test_bad_env_file_line(tmp_path):
    env = tmp_path / ".env"
    env.write_text("JUSTAWORD\n")
    with pytest.raises(ConfigError):
        read_env_file(env)


def test_masked_view_hides_every_secret():
    settings = load_settings({"TELEGRAM_BOT_TOKEN": "123:s3cr3tval", "NOWPAYMENTS_IPN_SECRET": "ipn-s3cr3tval",
                              "DATABASE_URL": "postgresql://u:s3cr3tval@h/db", "ADMIN_CHAT_IDS": "1, 2"},
                             env_file=None)
    shown = "\n".join(f"{k}={v}" for k, v in masked(settings).items())
    assert "s3cr3tval" not in shown
    assert "TELEGRAM_BOT_TOKEN=****** (set)" in shown and "ADMIN_CHAT_IDS=1,2" in shown
    assert "s3cr3tval" not in repr(settings)


def test_env_example_documents_every_setting(repo_root):
    text = (repo_root / ".env.example").read_text()
    documented = set(read_env_file(repo_root / ".env.example")) | {k for k in ENV_NAMES if f"# {k}=" in text}
    assert set(ENV_NAMES) <= documented


def test_lookalike_names_are_found_in_the_environment_and_in_env_files(tmp_path):
    env = tmp_path / ".env"
    env.write_text("PLATFORM_FEE_PERCENTAGE=5\nHTTP_PORT=9000\n")
    warnings = lookalike_names({"DATABSE_URL": "postgresql://x", "PATH": "/bin", "HTTP_PROXY": "http://p:3128",
                                "DATABASE": "x", "LOG_LEVEL": "INFO"}, env)
    assert len(warnings) == 2, warnings
    assert "DATABSE_URL (in the environment)" in warnings[0] and "did you mean DATABASE_URL?" in warnings[0]
    assert f"PLATFORM_FEE_PERCENTAGE (in {env})" in warnings[1] and "PLATFORM_FEE_PERCENT?" in warnings[1]


def _telepay(tmp_path, *args, **env):
    """The real CLI in a clean environment, in a directory of its own (no stray .env)."""
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TELEPAY_DATA_DIR": str(tmp_path / "var")}
    note_token(env.get("TELEGRAM_BOT_TOKEN"))
    result = subprocess.run([sys.executable, "-m", "telepay", *args], cwd=tmp_path, env={**base, **env},
                            capture_output=True, text=True, timeout=120)
    keep_output("telepay-" + "-".join(args[:2]), result.stdout + result.stderr)  # for the session's log guard
    return result


def test_telepay_run_exits_2_listing_every_missing_name(tmp_path):
    result = _telepay(tmp_path, "run")
    assert result.returncode == 2
    for name in REQUIRED_FOR_RUN:
        assert name in result.stderr


def test_stars_settings_parse_and_refuse_nonsense():
    defaults = load_settings(environ={}, env_file=None)
    assert (defaults.stars_usd_rate, defaults.stars_payout_hold_days, defaults.stars_only) == (
        Decimal("0.013"), 21, False)
    strict = load_settings(environ={"STARS_ONLY": "true", "STARS_USD_RATE": "0.02"}, env_file=None)
    assert strict.stars_only is True and strict.stars_usd_rate == Decimal("0.02")
    for bad in ({"STARS_ONLY": "maybe"}, {"STARS_USD_RATE": "0"}, {"STARS_PAYOUT_HOLD_DAYS": "-1"}):
        with pytest.raises(ConfigError) as caught:
            load_settings(environ=bad, env_file=None)
        assert caught.value.names == list(bad)


# Each bad setting, what it must be refused with, and (third) a word the message must contain
# saying what is allowed. Every row goes through `telepay check-config` as an operator would.
BAD_SETTINGS = [
    ("SWEEP_INTERVAL_SECONDS", "abc", "above 0"),
    ("SWEEP_INTERVAL_SECONDS", "0", "above 0"),
    ("PAYOUT_POLL_SECONDS", "inf", "above 0"),
    ("WORKER_POLL_SECONDS", "nan", "above 0"),
    ("PLATFORM_FEE_PERCENT", "150", "up to (not including) 100"),
    ("PLATFORM_FEE_PERCENT", "-1", "from 0"),
    ("PLATFORM_FEE_PERCENT", "ten", "percentage"),
    ("PAYMENT_UNDERPAID_TOLERANCE_PERCENT", "100", "up to (not including) 100"),
    ("RATE_LIMIT_BURST", "0", "1 or more"),
    ("RATE_LIMIT_PER_MINUTE", "-5", "1 or more"),
    ("DB_POOL_SIZE", "-1", "1 or more"),
    ("DB_MAX_OVERFLOW", "-3", "0 or more"),
    ("DB_POOL_TIMEOUT", "soon", "whole seconds"),
    ("LOG_FORMAT", "xml", "text or json"),
    ("LOG_LEVEL", "loud", "DEBUG, INFO"),
    ("ALLOWED_IPS", "10.0.0.0/33", "CIDR"),
    ("ALLOWED_IPS", "10.0.0.1/8", "CIDR"),  # host bits set: a typo either way it is read
    ("TRUSTED_PROXIES", "127.0.0.1,localhost", "CIDR"),
    ("NOWPAYMENTS_IPN_IPS", "51.89.194.21,everyone", "or any"),
    ("PUBLIC_BASE_URL", "pay.example.com", "http(s) URL"),
    ("NOWPAYMENTS_BASE_URL", "ftp://api.nowpayments.io", "http(s) URL"),
    ("ETH_RPC_URL", "http://127.0.0.1:99999", "http(s) URL"),
    ("DATABASE_URL", "mysql://u:pw@h/db", "PostgreSQL URL"),
    ("CLOUD_SQL_CONNECTION_NAME", "my-instance", "project:region:instance"),
    ("ADMIN_CHAT_IDS", "1,two", "whole numbers"),
    ("ADMIN_CHAT_IDS", "@ops", "whole numbers"),
    ("REMINDER_OFFSETS", "3 days,1d", "3d, 12h"),
    ("REMINDER_OFFSETS", "0h", "3d, 12h"),
    ("HTTP_PORT", "70000", "1 to 65535"),
    ("HTTP_PORT", "eighty", "1 to 65535"),
    ("HOST_WALLET_PRIVATE_KEY", "0x1234", "64 hex digits"),
    ("HOST_WALLET_PRIVATE_KEY", "zz" * 32, "64 hex digits"),
    ("USDT_CONTRACT_ADDRESS", "0xdAC17F958D2ee523a2206206994597C13D831ec8", "checksum"),
    ("USDT_CONTRACT_ADDRESS", "0x1234", "40 hex digits"),
    ("EXPIRY_GRACE_SECONDS", "-60", "0 or more"),
    ("TELEPAY_ENV", "prod", "development or production"),
    ("RATE_LIMIT_IPV6_PREFIX", "129", "1 to 128"),
    ("STARS_ONLY", "maybe", "true or false"),
    ("STARS_USD_RATE", "0", "above 0 and below 1"),
]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """`telepay` in-process (click's runner): a clean directory, none of our settings inherited."""
    monkeypatch.chdir(tmp_path)
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TELEPAY_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    return lambda *args, **env: runner.invoke(main, list(args), env=env)


@pytest.mark.parametrize("name,value,allowed", BAD_SETTINGS, ids=[f"{n}={v}" for n, v, _ in BAD_SETTINGS])
def test_every_bad_setting_exits_2_naming_it_and_what_is_allowed(cli, tmp_path, name, value, allowed):
    result = cli("check-config", **{name: value})
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a message and an exit code, not a crash
    assert f"{name}=" in result.stderr and allowed in result.stderr, result.stderr
    assert "Traceback" not in result.output
    if name in SECRET_NAMES:
        assert value not in result.output  # a bad secret is still a secret
    assert not (tmp_path / "var").exists()  # refused before any database was started


@pytest.mark.parametrize("name,value,allowed", [BAD_SETTINGS[0], BAD_SETTINGS[4]], ids=["sweep", "fee"])
def test_telepay_run_refuses_bad_settings_before_anything_starts(tmp_path, name, value, allowed):
    result = _telepay(tmp_path, "run", **{name: value})
    assert result.returncode == 2 and name in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()  # refused before any database was started


def test_a_bad_env_file_exits_2(tmp_path):
    (tmp_path / ".env").write_text("JUSTAWORD\n")
    result = _telepay(tmp_path, "check-config")
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr and "Traceback" not in result.stderr


def test_production_refuses_the_embedded_database(tmp_path):
    (tmp_path / ".env").write_text("TELEPAY_ENV=production\n")
    result = _telepay(tmp_path, "run", DATABSE_URL="postgresql://telepay@db.internal/telepay")
    assert result.returncode == 2, result.stderr
    assert "DATABSE_URL (in the environment) is not a TelePay setting" in result.stderr  # warned at start
    assert "TELEPAY_ENV=production needs DATABASE_URL or CLOUD_SQL_CONNECTION_NAME" in result.stderr
    assert not (tmp_path / "var").exists()  # no embedded database was made to fall back on
    upgrade = _telepay(tmp_path, "db", "upgrade")
    assert upgrade.returncode == 2 and "TELEPAY_ENV=production needs" in upgrade.stderr
    assert not (tmp_path / "var").exists()


def test_check_config_reports_a_lookalike_name(tmp_path):
    (tmp_path / ".env").write_text("TELEPAY_ENV=production\n")
    result = _telepay(tmp_path, "check-config", DATABSE_URL="postgresql://telepay@db.internal/telepay")
    assert "DATABSE_URL (in the environment) is not a TelePay setting" in result.stderr
    assert "did you mean DATABASE_URL?" in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr
