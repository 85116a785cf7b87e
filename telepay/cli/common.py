"""What every `telepay` command needs: the settings, the engine, and exit 2 on a bad one."""

from __future__ import annotations

import sys

import click

from telepay.config import ConfigError, Settings, load_settings


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        click.echo(f"telepay: {error}", err=True)
        sys.exit(2)


def fail_config(error: ConfigError) -> None:
    click.echo(f"telepay: {error}", err=True)
    sys.exit(2)


def engine_or_exit(settings: Settings):
    from telepay.models.engine import make_engine

    try:
        return make_engine(settings)
    except ConfigError as error:
        fail_config(error)


def session_factory():
    from telepay.models.engine import make_session_factory

    return make_session_factory(engine_or_exit(settings_or_exit()))
