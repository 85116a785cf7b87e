"""`telepay alerts test`: one test alert through every configured channel, one OK/FAIL line each."""

from __future__ import annotations

import asyncio
import sys

import click

from telepay.cli.common import settings_or_exit


@click.group()
def alerts() -> None:
    """Operator alerts (Telegram chats in ADMIN_CHAT_IDS, ALERT_WEBHOOK_URL)."""


@alerts.command("test")
def alerts_test() -> None:
    """Send a test alert through every channel and say which got through."""
    from telegram import Bot

    from telepay.ops.alerts import Alert, channels_for

    settings = settings_or_exit()
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else None

    async def send_all() -> list[tuple[str, str | None]]:
        bot = Bot(token, base_url=settings.telegram_api_base_url) if token else None
        channels = channels_for(settings, bot.send_message if bot else None)
        if not channels:
            return []
        alert = Alert("test", "ok", "a test alert from `telepay alerts test`: if you read this, alerts reach you")
        results: list[tuple[str, str | None]] = []
        try:
            if bot is not None:
                await bot.initialize()
            for channel in channels:
                try:
                    await channel.send(alert)
                    results.append((channel.name, None))
                except Exception as error:  # noqa: BLE001 - the failure is the answer
                    results.append((channel.name, f"{type(error).__name__}: {error}"))
        finally:
            if bot is not None:
                await bot.shutdown()
        return results

    results = asyncio.run(send_all())
    if not results:
        click.echo("telepay: no alert channel is configured: set ADMIN_CHAT_IDS and/or ALERT_WEBHOOK_URL", err=True)
        sys.exit(2)
    for name, error in results:
        click.echo(f"{name:10} {'OK' if error is None else 'FAIL ' + error}")
    sys.exit(1 if any(error for _, error in results) else 0)
