"""Settings: one typed object, read once from the environment and an optional `.env` file.

Every setting is a pydantic-settings field named by its environment variable, and what it
allows is stated once, in its description, and checked when the settings are read: a bad value
stops `telepay` at start with exit 2 and a message naming the setting and what it allows, not
with a traceback or a failure at the first sale. This module is the list of settings and what
each allows; `telepay.config_load` reads them in (`.env`, the environment, Secret Manager paths)
and renders a refusal. Secrets are `SecretStr`, so they print as `**********`;
`config_load.masked` is the only view meant for humans.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AliasGenerator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from telepay import config_values as check

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


def parse_duration(name: str, value: str) -> timedelta:
    """`3d`, `12h`, `30m`, `45s` -> a timedelta; anything else is a ConfigError naming `name`."""
    try:
        return check.duration(value)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}", [name]) from None


def reveal(secret: SecretStr | None) -> str | None:
    """The plain value of an optional secret, for the one place that hands it to a client."""
    return secret.get_secret_value() if secret is not None else None


def _is(allowed: str, default: Any = None, **constraints: Any) -> Any:
    """A field whose description says what it allows; the description is quoted in errors."""
    return Field(default, description=allowed, **constraints)


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Networks = Annotated[tuple[str, ...], NoDecode]  # comma-separated in the environment, not JSON
Durations = Annotated[tuple[str, ...], NoDecode]
ChatIds = Annotated[tuple[int, ...], NoDecode]

_WEB = ("http", "https")


class Settings(BaseSettings):
    """Each field's environment name is its name in capitals (TELEPAY_DATA_DIR excepted)."""

    model_config = SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=str.upper), frozen=True, extra="ignore",
        hide_input_in_errors=True)

    telepay_env: Literal["development", "production"] = _is(
        "development or production (production: never the embedded database)", "development")
    telegram_bot_token: SecretStr | None = _is("the token from @BotFather")
    telegram_bot_username: str | None = _is("the bot's username without @")
    telegram_api_base_url: str = _is("an http(s) URL", "https://api.telegram.org/bot")
    database_url: SecretStr | None = _is("a PostgreSQL URL, e.g. postgresql://user:password@host/db")
    cloud_sql_connection_name: str | None = _is("project:region:instance")
    database_name: str | None = _is("a database name")
    database_user: str | None = _is("a database user")
    database_password: SecretStr | None = _is("the database password")
    data_dir: Path = _is("a directory", Path("./var"), validation_alias="TELEPAY_DATA_DIR")
    db_pool_size: int = _is("a whole number of connections, 1 or more", 5, ge=1)
    db_max_overflow: int = _is("a whole number of extra connections, 0 or more", 10, ge=0)
    db_pool_timeout: int = _is("whole seconds, 1 or more", 30, ge=1)
    db_pool_recycle: int = _is("whole seconds, 1 or more, or -1 for never", 1800, ge=-1)
    # Fail fast: how long to wait for a connection or a liveness check, how long one statement
    # may run on the server, when an idle TCP connection is probed (a half-open one is found in
    # about twice this), and how long `telepay run` waits for the database at start-up.
    db_connect_timeout_seconds: int = _is("whole seconds, 1 or more", 5, ge=1)
    db_statement_timeout_seconds: int = _is("whole seconds, 1 or more", 30, ge=1)
    db_keepalive_seconds: int = _is("whole seconds, 1 or more", 30, ge=1)
    db_startup_wait_seconds: int = _is("whole seconds, 0 or more", 120, ge=0)
    http_host: str = _is("an address to listen on", "127.0.0.1", min_length=1)
    http_port: int = _is("a TCP port, 1 to 65535", 8080, ge=1, le=65535)
    # Prometheus metrics, served on loopback only (never through Caddy); 0 turns them off.
    metrics_port: int = _is("a TCP port, 1 to 65535, or 0 for no metrics endpoint", 9464, ge=0, le=65535)
    public_base_url: str | None = _is("the public http(s) URL of this service")
    webhook_signing_secret: SecretStr | None = _is("a shared secret")
    # During a rotation: the value being replaced, still accepted until every caller has the new one.
    webhook_signing_secret_previous: SecretStr | None = _is("the previous shared secret (during a rotation)")
    operator_token: SecretStr | None = _is("a bearer token")
    allowed_ips: Networks = _is("comma-separated IP addresses or CIDR networks", ())
    trusted_proxies: Networks = _is("comma-separated IP addresses or CIDR networks", ("127.0.0.1", "::1"))
    rate_limit_per_minute: int = _is("requests per minute, 1 or more", 10, ge=1)
    rate_limit_burst: int = _is("requests, 1 or more", 20, ge=1)
    # IPv6 clients are limited per network of this size: one host holds a whole /64 and could
    # otherwise rotate through addresses to get a fresh bucket for every request.
    rate_limit_ipv6_prefix: int = _is("a prefix length from 1 to 128", 64, ge=1, le=128)
    nowpayments_api_key: SecretStr | None = _is("the NOWPayments API key")
    nowpayments_ipn_secret: SecretStr | None = _is("the NOWPayments IPN secret")
    nowpayments_ipn_secret_previous: SecretStr | None = _is("the previous IPN secret (during a rotation)")
    nowpayments_base_url: str = _is("an http(s) URL", "https://api.nowpayments.io/v1")
    # The dashboard login, for the JWT NOWPayments' payments list may want besides the API key
    # (unconfirmed which it needs; with both set, both are sent). Used to recover lost IPNs.
    nowpayments_email: str | None = _is("the NOWPayments dashboard login (an email address)")
    nowpayments_password: SecretStr | None = _is("the NOWPayments dashboard password")
    # Where IPNs may come from: NOWPayments' published addresses unless told otherwise;
    # "any" switches the allowlist off (the signature still has to verify).
    nowpayments_ipn_ips: Networks = _is(
        "comma-separated IP addresses or CIDR networks, or any",
        ("51.89.194.21", "51.75.77.69", "138.201.172.58", "65.21.158.36"))
    changenow_api_key: SecretStr | None = _is("the ChangeNOW API key")
    changenow_base_url: str = _is("an http(s) URL", "https://api.changenow.io")
    eth_rpc_url: str | None = _is("an http(s) URL of an Ethereum JSON-RPC endpoint")
    host_wallet_private_key: SecretStr | None = _is("32 bytes as 64 hex digits, 0x optional")
    usdt_contract_address: str | None = _is("an Ethereum address: 0x and 40 hex digits, checksum valid if mixed case")
    # Ethereum as on mainnet (docs/decisions.md): the chain the RPC must be on, blocks on top of a
    # transfer before it counts, how long a transfer may wait unmined before it is replaced with
    # higher fees, and direct ETH payouts worth less than this many times their gas are carried over.
    eth_chain_id: int = _is("an EIP-155 chain id, 1 or more (1: Ethereum mainnet)", 1, ge=1)
    eth_confirmations: int = _is("blocks, 1 or more", 12, ge=1)
    eth_replace_after_seconds: int = _is("whole seconds, 1 or more", 180, ge=1)
    eth_payout_min_fee_multiple: Decimal = _is("a number, 0 or more", Decimal("10"), ge=0, allow_inf_nan=False)
    platform_fee_percent: Decimal = _is("a percentage from 0 up to (not including) 100", Decimal("10"),
                                        ge=0, lt=100, allow_inf_nan=False)
    # Payouts: the threshold-batch timer, how often an exchange or transfer in flight is looked
    # at, and the USD the host wallet should keep beyond what it owes before operators are told.
    payout_batch_interval_seconds: Seconds = _is("seconds, a number above 0", 300.0)
    payout_poll_seconds: Seconds = _is("seconds, a number above 0", 30.0)
    host_wallet_low_balance_usd: Decimal = _is("USD, 0 or more", Decimal("100"), ge=0, allow_inf_nan=False)
    # A finished payment this many percent short of the price still completes its invoice
    # (network fees and rate rounding); anything shorter is treated as partly paid.
    payment_underpaid_tolerance_percent: Decimal = _is("a percentage from 0 up to (not including) 100",
                                                       Decimal("0.5"), ge=0, lt=100, allow_inf_nan=False)
    # An unfinished payment this old with no news is asked about (its IPN may be lost).
    payment_status_check_minutes: int = _is("whole minutes, 1 or more", 30, ge=1)
    # This many refused IPNs within this many minutes alert the operators (once per window).
    ipn_refusal_alert_count: int = _is("a whole number, 1 or more", 10, ge=1)
    ipn_refusal_alert_minutes: int = _is("whole minutes, 1 or more", 10, ge=1)
    admin_chat_ids: ChatIds = _is("comma-separated Telegram chat ids (whole numbers)", ())
    # Operator alerts (telepay.ops.alerts): a JSON POST to this URL as well as the admin chats;
    # how often conditions are evaluated, how often one that holds is sent again, and how long
    # a payout may keep failing before it is one.
    alert_webhook_url: str | None = _is("an http(s) URL that takes a JSON POST")
    alert_check_seconds: Seconds = _is("seconds, a number above 0", 60.0)
    alert_repeat_minutes: int = _is("whole minutes, 1 or more", 60, ge=1)
    payout_failing_alert_minutes: int = _is("whole minutes, 1 or more", 15, ge=1)
    # Telegram Stars: what a Star is worth when withdrawn (USD), how long Telegram holds Stars
    # before they can be withdrawn (so how long an owner's Stars share is held), and whether
    # only Stars are offered (Telegram's rule for digital goods, applied strictly).
    stars_usd_rate: Decimal = _is("a USD amount above 0 and below 1 (Telegram pays 0.013)", Decimal("0.013"),
                                  gt=0, lt=1, allow_inf_nan=False)
    stars_payout_hold_days: int = _is("whole days, 0 or more", 21, ge=0)
    stars_only: bool = _is("true or false", False)
    # The expiry sweep: how often it runs, how many subscriptions one transaction claims, how
    # long after expiry access really ends, and how long before expiry reminders go out.
    sweep_interval_seconds: Seconds = _is("seconds, a number above 0", 60.0)
    # How often every live pair's rights (and its owner's admin status) are asked of Telegram;
    # my_chat_member updates catch most changes at once, this catches the rest.
    rights_check_seconds: Seconds = _is("seconds, a number above 0", 600.0)
    sweep_batch_size: int = _is("a whole number, 1 or more", 500, ge=1)
    expiry_grace_seconds: int = _is("whole seconds, 0 or more", 0, ge=0)
    reminder_offsets: Durations = _is("comma-separated durations like 3d, 12h, 30m or 45s", ("3d", "1d"))
    log_format: Literal["text", "json"] = _is("text or json", "text")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _is(
        "DEBUG, INFO, WARNING, ERROR or CRITICAL", "INFO")
    worker_poll_seconds: Seconds = _is("seconds, a number above 0", 1.0)
    # Sandbox and demo only: a file holding seconds to add to the clock. Never set in production.
    clock_offset_file: str | None = _is("a file path")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_other_sources):
        # `config_load.load_settings` has read the environment and .env already (it has to see them to
        # resolve Secret Manager paths and to spot misspelt names): validate what it passes.
        return (init_settings,)

    @field_validator("telepay_env", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("allowed_ips", "trusted_proxies", "nowpayments_ipn_ips", "reminder_offsets",
                     "admin_chat_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return check.split(value) if isinstance(value, str) else value

    @field_validator("allowed_ips", "trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check.networks(value)

    @field_validator("nowpayments_ipn_ips")
    @classmethod
    def _ipn_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return value if [v.lower() for v in value] == ["any"] else check.networks(value)

    @field_validator("reminder_offsets")
    @classmethod
    def _durations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for offset in value:
            check.duration(offset)
        return value

    @field_validator("telegram_api_base_url", "nowpayments_base_url", "changenow_base_url", "alert_webhook_url",
                     "public_base_url", "eth_rpc_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        return check.url(value, _WEB) if value is not None else None

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        return check.postgres_url(value) if value is not None else None

    @field_validator("cloud_sql_connection_name")
    @classmethod
    def _instance(cls, value: str | None) -> str | None:
        return check.cloud_sql_instance(value) if value is not None else None

    @field_validator("host_wallet_private_key")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        return check.private_key(value) if value is not None else None

    @field_validator("usdt_contract_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return check.eth_address(value) if value is not None else None

    def missing(self, names: tuple[str, ...] = REQUIRED_FOR_RUN) -> list[str]:
        return [name for name in names if getattr(self, ENV_NAMES[name]) in (None, "")]

    def require(self, names: tuple[str, ...] = REQUIRED_FOR_RUN) -> Settings:
        missing = self.missing(names)
        if missing:
            raise ConfigError(
                "Missing required settings: " + ", ".join(missing)
                + ". Set them in the environment or in .env (see .env.example).",
                missing,
            )
        return self

    def require_for_run(self) -> Settings:
        """What `telepay run` needs: the required names, and in production a real database."""
        return self.require_database().require()

    def require_database(self) -> Settings:
        """In production the embedded database is never a silent fallback (a misspelt DATABASE_URL)."""
        if self.telepay_env == "production" and not (self.database_url or self.cloud_sql_connection_name):
            raise ConfigError(
                "TELEPAY_ENV=production needs DATABASE_URL or CLOUD_SQL_CONNECTION_NAME: the embedded "
                "database is for development only. Set one (check its spelling), or unset TELEPAY_ENV.",
                ["DATABASE_URL", "CLOUD_SQL_CONNECTION_NAME"])
        return self


# Environment name -> attribute, for every setting an operator can give.
ENV_NAMES = {
    (field.validation_alias if isinstance(field.validation_alias, str) else name.upper()): name
    for name, field in Settings.model_fields.items()
}
FIELDS = {env: Settings.model_fields[attr] for env, attr in ENV_NAMES.items()}
SECRET_NAMES = frozenset(env for env, field in FIELDS.items() if SecretStr in get_args(field.annotation))
