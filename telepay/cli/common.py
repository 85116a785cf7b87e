"""What every `telepay` command needs: the settings, the engine, and exit 2 on a bad one."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from telepay.config import SECRET_NAMES, ConfigError, Settings
from telepay.config_load import load_settings, lookalike_names


def settings_or_exit() -> Settings:
    """The settings, or exit 2 naming every bad one (a message, never a traceback)."""
    try:
        return load_settings()
    except ConfigError as error:
        fail_config(error)


def lookalikes_or_exit() -> list[str]:
    """Names in the environment or .env that look like a setting but are not one (`DATABSE_URL`)."""
    try:
        return lookalike_names()
    except ConfigError as error:
        fail_config(error)


def fail_config(error: ConfigError) -> NoReturn:
    click.echo(f"telepay: {error}", err=True)
    sys.exit(2)


def engine_or_exit(settings: Settings):
    """The engine; in production never the embedded database (`db upgrade` would migrate it)."""
    from telepay.models.engine import make_engine

    try:
        return make_engine(settings.require_database())
    except ConfigError as error:
        fail_config(error)


def session_factory():
    from telepay.models.engine import make_session_factory

    return make_session_factory(engine_or_exit(settings_or_exit()))


def secret_values(settings: Settings) -> list[str]:
    """Every secret's value, for the log's masking filter (attributes are the lower-case names)."""
    values = (getattr(settings, name.lower(), None) for name in SECRET_NAMES)
    return [v.get_secret_value() if hasattr(v, "get_secret_value") else str(v) for v in values if v]
