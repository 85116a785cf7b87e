"""Settings: one typed object, read once from the environment and an optional `.env` file.

A value shaped like a Secret Manager version path (`projects/<p>/secrets/<name>/versions/<v>`)
is fetched from Secret Manager; any other value is used as given. Secrets have no defaults and
are never logged: `masked()` is the only view meant for humans.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

SECRET_PATH = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$")

# Settings whose values are secrets: masked in every human-facing view.
SECRET_NAMES = frozenset(
    {
        "TELEGRAM_BOT_TOKEN",
        "DATABASE_URL",
        "DATABASE_PASSWORD",
        "WEBHOOK_SIGNING_SECRET",
        "NOWPAYMENTS_API_KEY",
        "NOWPAYMENTS_IPN_SECRET",
        "NOWPAYMENTS_PASSWORD",
        "CHANGENOW_API_KEY",
        "HOST_WALLET_PRIVATE_KEY",
        "OPERATOR_TOKEN",
    }
)

# What `telepay run` cannot work without. Each later capability adds its own names here,
# so a misconfigured deployment fails at start with one clear message, not at first use.
REQUIRED_FOR_RUN = (
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_BOT_USERNAME",
    "WEBHOOK_SIGNING_SECRET",
    "NOWPAYMENTS_API_KEY",
    "NOWPAYMENTS_IPN_SECRET",
    "PUBLIC_BASE_URL",  # NOWPayments needs it for the IPN callback of every invoice
    # Payouts: conversion and the host wallet that funds every payout.
    "CHANGENOW_API_KEY",
    "ETH_RPC_URL",
    "HOST_WALLET_PRIVATE_KEY",
    "USDT_CONTRACT_ADDRESS",
)


class ConfigError(Exception):
    """Settings are missing or malformed; `names` lists every offending setting."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


class SecretClient(Protocol):
    def access(self, path: str) -> str: ...


class GoogleSecretClient:
    """Secret Manager access, created only when a setting actually names a secret path."""

    def __init__(self) -> None:
        from google.cloud import secretmanager

        self._client = secretmanager.SecretManagerServiceClient()

    def access(self, path: str) -> str:
        response = self._client.access_secret_version(name=path)
        return response.payload.data.decode("utf-8")


def _text(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def _int(name: str, value: str | None, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}", [name]) from None


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value in (None, ""):
        return default
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}", [name])


def _decimal(name: str, value: str | None, default: str) -> Decimal:
    try:
        return Decimal(value if value not in (None, "") else default)
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {value!r}", [name]) from None


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, value: str) -> timedelta:
    """`3d`, `12h`, `30m`, `45s` -> a timedelta; anything else is a ConfigError naming `name`."""
    match = _DURATION.match(value.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{name} takes durations like 3d, 12h, 30m or 45s, got {value!r}", [name])
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str | None = field(default=None, repr=False)
    telegram_bot_username: str | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    database_url: str | None = field(default=None, repr=False)
    cloud_sql_connection_name: str | None = None
    database_name: str | None = None
    database_user: str | None = None
    database_password: str | None = field(default=None, repr=False)
    data_dir: Path = Path("./var")
    db_pool_size: int = 5
    db_max_overflow: int = 10
    db_pool_timeout: int = 30
    db_pool_recycle: int = 1800
    # Fail fast: how long to wait for a connection or a liveness check, how long one statement
    # may run on the server, when an idle TCP connection is probed (a half-open one is found in
    # about twice this), and how long `telepay run` waits for the database at start-up.
    db_connect_timeout_seconds: int = 5
    db_statement_timeout_seconds: int = 30
    db_keepalive_seconds: int = 30
    db_startup_wait_seconds: int = 120
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_base_url: str | None = None
    webhook_signing_secret: str | None = field(default=None, repr=False)
    operator_token: str | None = field(default=None, repr=False)
    allowed_ips: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    rate_limit_per_minute: int = 10
    rate_limit_burst: int = 20
    # IPv6 clients are limited per network of this size: one host holds a whole /64 and could
    # otherwise rotate through addresses to get a fresh bucket for every request.
    rate_limit_ipv6_prefix: int = 64
    nowpayments_api_key: str | None = field(default=None, repr=False)
    nowpayments_ipn_secret: str | None = field(default=None, repr=False)
    nowpayments_base_url: str = "https://api.nowpayments.io/v1"
    # The dashboard login, for the JWT NOWPayments' payments list may want besides the API key
    # (unconfirmed which it needs; with both set, both are sent). Used to recover lost IPNs.
    nowpayments_email: str | None = None
    nowpayments_password: str | None = field(default=None, repr=False)
    # Where IPNs may come from: NOWPayments' published addresses unless told otherwise;
    # "any" switches the allowlist off (the signature still has to verify).
    nowpayments_ipn_ips: tuple[str, ...] = ("51.89.194.21", "51.75.77.69", "138.201.172.58", "65.21.158.36")
    changenow_api_key: str | None = field(default=None, repr=False)
    changenow_base_url: str = "https://api.changenow.io"
    eth_rpc_url: str | None = None
    host_wallet_private_key: str | None = field(default=None, repr=False)
    usdt_contract_address: str | None = None
    platform_fee_percent: Decimal = Decimal("10")
    # Payouts: the threshold-batch timer, how often an exchange or transfer in flight is looked
    # at, and the USD the host wallet should keep beyond what it owes before operators are told.
    payout_batch_interval_seconds: float = 300.0
    payout_poll_seconds: float = 30.0
    host_wallet_low_balance_usd: Decimal = Decimal("100")
    # A finished payment this many percent short of the price still completes its invoice
    # (network fees and rate rounding); anything shorter is treated as partly paid.
    payment_underpaid_tolerance_percent: Decimal = Decimal("0.5")
    # An unfinished payment this old with no news is asked about (its IPN may be lost).
    payment_status_check_minutes: int = 30
    # This many refused IPNs within this many minutes alert the operators (once per window).
    ipn_refusal_alert_count: int = 10
    ipn_refusal_alert_minutes: int = 10
    admin_chat_ids: tuple[int, ...] = ()
    # Telegram Stars: what a Star is worth when withdrawn (USD), how long Telegram holds Stars
    # before they can be withdrawn (so how long an owner's Stars share is held), and whether
    # only Stars are offered (Telegram's rule for digital goods, applied strictly).
    stars_usd_rate: Decimal = Decimal("0.013")
    stars_payout_hold_days: int = 21
    stars_only: bool = False
    # The expiry sweep: how often it runs, how many subscriptions one transaction claims, how
    # long after expiry access really ends, and how long before expiry reminders go out.
    sweep_interval_seconds: float = 60.0
    sweep_batch_size: int = 500
    expiry_grace_seconds: int = 0
    reminder_offsets: tuple[str, ...] = ("3d", "1d")
    log_format: str = "text"
    log_level: str = "INFO"
    worker_poll_seconds: float = 1.0
    # Sandbox and demo only: a file holding seconds to add to the clock. Never set in production.
    clock_offset_file: str | None = None

    def missing(self, names: tuple[str, ...] = REQUIRED_FOR_RUN) -> list[str]:
        return [name for name in names if getattr(self, _ATTR[name]) in (None, "")]

    def require(self, names: tuple[str, ...] = REQUIRED_FOR_RUN) -> "Settings":
        missing = self.missing(names)
        if missing:
            raise ConfigError(
                "Missing required settings: " + ", ".join(missing)
                + ". Set them in the environment or in .env (see .env.example).",
                missing,
            )
        return self

    def masked(self) -> dict[str, str]:
        """Every setting by its environment name, secrets shown only as set / not set."""
        view = {}
        for env_name, attr in _ATTR.items():
            value = getattr(self, attr)
            if env_name in SECRET_NAMES:
                view[env_name] = "****** (set)" if value else "(not set)"
            elif isinstance(value, tuple):
                view[env_name] = ",".join(str(v) for v in value)
            else:
                view[env_name] = "" if value is None else str(value)
        return view


# Environment name -> attribute. Every setting an operator can give, in one place.
_ATTR = {
    "TELEGRAM_BOT_TOKEN": "telegram_bot_token",
    "TELEGRAM_BOT_USERNAME": "telegram_bot_username",
    "TELEGRAM_API_BASE_URL": "telegram_api_base_url",
    "DATABASE_URL": "database_url",
    "CLOUD_SQL_CONNECTION_NAME": "cloud_sql_connection_name",
    "DATABASE_NAME": "database_name",
    "DATABASE_USER": "database_user",
    "DATABASE_PASSWORD": "database_password",
    "TELEPAY_DATA_DIR": "data_dir",
    "DB_POOL_SIZE": "db_pool_size",
    "DB_MAX_OVERFLOW": "db_max_overflow",
    "DB_POOL_TIMEOUT": "db_pool_timeout",
    "DB_POOL_RECYCLE": "db_pool_recycle",
    "DB_CONNECT_TIMEOUT_SECONDS": "db_connect_timeout_seconds",
    "DB_STATEMENT_TIMEOUT_SECONDS": "db_statement_timeout_seconds",
    "DB_KEEPALIVE_SECONDS": "db_keepalive_seconds",
    "DB_STARTUP_WAIT_SECONDS": "db_startup_wait_seconds",
    "HTTP_HOST": "http_host",
    "HTTP_PORT": "http_port",
    "PUBLIC_BASE_URL": "public_base_url",
    "WEBHOOK_SIGNING_SECRET": "webhook_signing_secret",
    "OPERATOR_TOKEN": "operator_token",
    "ALLOWED_IPS": "allowed_ips",
    "TRUSTED_PROXIES": "trusted_proxies",
    "RATE_LIMIT_PER_MINUTE": "rate_limit_per_minute",
    "RATE_LIMIT_BURST": "rate_limit_burst",
    "RATE_LIMIT_IPV6_PREFIX": "rate_limit_ipv6_prefix",
    "NOWPAYMENTS_API_KEY": "nowpayments_api_key",
    "NOWPAYMENTS_IPN_SECRET": "nowpayments_ipn_secret",
    "NOWPAYMENTS_BASE_URL": "nowpayments_base_url",
    "NOWPAYMENTS_EMAIL": "nowpayments_email",
    "NOWPAYMENTS_PASSWORD": "nowpayments_password",
    "NOWPAYMENTS_IPN_IPS": "nowpayments_ipn_ips",
    "CHANGENOW_API_KEY": "changenow_api_key",
    "CHANGENOW_BASE_URL": "changenow_base_url",
    "ETH_RPC_URL": "eth_rpc_url",
    "HOST_WALLET_PRIVATE_KEY": "host_wallet_private_key",
    "USDT_CONTRACT_ADDRESS": "usdt_contract_address",
    "PLATFORM_FEE_PERCENT": "platform_fee_percent",
    "PAYOUT_BATCH_INTERVAL_SECONDS": "payout_batch_interval_seconds",
    "PAYOUT_POLL_SECONDS": "payout_poll_seconds",
    "HOST_WALLET_LOW_BALANCE_USD": "host_wallet_low_balance_usd",
    "PAYMENT_UNDERPAID_TOLERANCE_PERCENT": "payment_underpaid_tolerance_percent",
    "PAYMENT_STATUS_CHECK_MINUTES": "payment_status_check_minutes",
    "IPN_REFUSAL_ALERT_COUNT": "ipn_refusal_alert_count",
    "IPN_REFUSAL_ALERT_MINUTES": "ipn_refusal_alert_minutes",
    "ADMIN_CHAT_IDS": "admin_chat_ids",
    "STARS_USD_RATE": "stars_usd_rate",
    "STARS_PAYOUT_HOLD_DAYS": "stars_payout_hold_days",
    "STARS_ONLY": "stars_only",
    "SWEEP_INTERVAL_SECONDS": "sweep_interval_seconds",
    "SWEEP_BATCH_SIZE": "sweep_batch_size",
    "EXPIRY_GRACE_SECONDS": "expiry_grace_seconds",
    "REMINDER_OFFSETS": "reminder_offsets",
    "LOG_FORMAT": "log_format",
    "LOG_LEVEL": "log_level",
    "WORKER_POLL_SECONDS": "worker_poll_seconds",
    "CLOCK_OFFSET_FILE": "clock_offset_file",
}


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a simple KEY=VALUE file (comments, blank lines, optional quotes, `export `)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE", [])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    secret_client_factory: Callable[[], SecretClient] = GoogleSecretClient,
) -> Settings:
    """Build Settings from `.env` overlaid by the environment (the environment wins)."""
    raw: dict[str, str] = read_env_file(env_file) if env_file else {}
    raw.update(os.environ if environ is None else environ)
    raw = {k: v for k, v in raw.items() if k in _ATTR}

    client: SecretClient | None = None
    for name, value in raw.items():
        if value and SECRET_PATH.match(value.strip()):
            client = client or secret_client_factory()
            raw[name] = client.access(value.strip())

    def get(name: str) -> str | None:
        return _text(raw.get(name))

    try:
        admin_ids = tuple(int(v) for v in _list(get("ADMIN_CHAT_IDS")))
    except ValueError:
        raise ConfigError("ADMIN_CHAT_IDS must be comma-separated Telegram ids", ["ADMIN_CHAT_IDS"]) from None
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be 'text' or 'json', got {log_format!r}", ["LOG_FORMAT"])

    defaults = Settings()
    values: dict[str, Any] = {}
    for name, attr in _ATTR.items():
        value = get(name)
        default = getattr(defaults, attr)
        if isinstance(default, bool):
            values[attr] = _bool(name, value, default)
        elif default is None or isinstance(default, str):
            values[attr] = value if value is not None else default
        elif isinstance(default, int):
            values[attr] = _int(name, value, default)
        elif isinstance(default, float):
            values[attr] = float(value) if value is not None else default
        elif isinstance(default, Decimal):
            values[attr] = _decimal(name, value, str(default))
        elif isinstance(default, Path):
            values[attr] = Path(value) if value is not None else default
        elif isinstance(default, tuple):
            values[attr] = _list(value) if value is not None else default
    values["admin_chat_ids"] = admin_ids
    values["log_format"] = log_format
    if not Decimal(0) < values["stars_usd_rate"] < Decimal(1):
        raise ConfigError("STARS_USD_RATE must be a positive USD amount below 1 (Telegram pays 0.013)",
                          ["STARS_USD_RATE"])
    if values["stars_payout_hold_days"] < 0:
        raise ConfigError("STARS_PAYOUT_HOLD_DAYS must be 0 or more", ["STARS_PAYOUT_HOLD_DAYS"])
    for offset in values["reminder_offsets"]:
        parse_duration("REMINDER_OFFSETS", offset)
    if not 1 <= values["rate_limit_ipv6_prefix"] <= 128:
        raise ConfigError("RATE_LIMIT_IPV6_PREFIX must be a prefix length from 1 to 128", ["RATE_LIMIT_IPV6_PREFIX"])
    return dataclasses.replace(defaults, **values)
