"""`telepay check-config --online` and `telepay wallet`: each outside service asked with the
real credentials, one OK/FAIL line each, so a wrong key shows before the first sale fails."""

from __future__ import annotations

import asyncio
import logging
import sys
from decimal import Decimal
from typing import Callable

import click

from telepay.cli.common import engine_or_exit, secret_values, settings_or_exit
from telepay.logs import MaskingFormatter


def _telegram(settings) -> str:
    from telegram import Bot

    async def get_me() -> str:
        async with Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_api_base_url) as bot:
            me = bot.bot  # getMe, made by initialize
            if settings.telegram_bot_username and me.username != settings.telegram_bot_username:
                raise ValueError(f"the token is @{me.username}'s, TELEGRAM_BOT_USERNAME says "
                                 f"@{settings.telegram_bot_username}")
            return f"@{me.username}"

    return asyncio.run(get_me())


def _operators(settings) -> str:
    """Each ADMIN_CHAT_IDS chat the bot can write to: Telegram never lets a bot write first, so an
    operator who never sent /start (or blocked the bot) would get no alert. Only a real message
    proves it (getChat answers for people who never started the bot too), so one is sent."""
    from telegram import Bot
    from telegram.error import TelegramError

    async def look() -> str:
        unreachable = []
        async with Bot(settings.telegram_bot_token.get_secret_value(), base_url=settings.telegram_api_base_url) as bot:
            for chat_id in settings.admin_chat_ids:
                try:
                    await bot.send_message(chat_id, "TelePay check-config --online: alerts reach this chat.")
                except TelegramError as error:
                    unreachable.append(f"{chat_id} ({error.message})")
        if unreachable:
            raise ValueError("the bot cannot write to " + ", ".join(unreachable)
                             + ": each operator must send /start to the bot (or add it to the group)")
        return f"{len(settings.admin_chat_ids)} operator chat(s) reachable"

    return asyncio.run(look())


def _nowpayments(services) -> str:
    worth = services.invoices.provider.estimate(Decimal("10"), "usd", "btc")
    return f"API key accepted (10 USD is {worth} BTC)"


def _changenow(services) -> str:
    if services.changenow is None:
        raise ValueError("CHANGENOW_API_KEY is not set")
    limits = services.changenow.range("eth", "usdt", "eth", "eth")
    return f"API key accepted (ETH->USDT minimum {limits.min_amount})"


def _chain(services) -> str:
    if services.payouts is None:
        raise ValueError("payouts are not configured (ETH_RPC_URL, HOST_WALLET_PRIVATE_KEY, USDT_CONTRACT_ADDRESS)")
    chain_id = services.payouts.wallet.w3.eth.chain_id
    want = services.settings.eth_chain_id
    if want is not None and chain_id != want:
        raise ValueError(f"the RPC serves chain {chain_id}, ETH_CHAIN_ID says {want}")
    return f"chain id {chain_id}"


def _wallet(services) -> str:
    if services.payouts is None:
        raise ValueError("payouts are not configured")
    wallet = services.payouts.wallet
    eth = Decimal(wallet.balance("ETH")).scaleb(-18)
    usdt = Decimal(wallet.balance("USDT")).scaleb(-6)
    return f"{wallet.address}: {eth:.6f} ETH, {usdt:.2f} USDT"


def run_checks(checks: list[tuple[str, Callable[[], str]]], mask: Callable[[str], str]) -> bool:
    ok = True
    for name, check in checks:
        try:
            click.echo(mask(f"{name:12} OK   {check()}"))
        except Exception as error:  # noqa: BLE001 - the failure is the answer
            ok = False
            # An error may quote the credential it refused (a Bot API URL carries the token).
            click.echo(mask(f"{name:12} FAIL {type(error).__name__}: {error}"))
    return ok


def online_checks(settings, engine) -> bool:
    from telepay.wiring import build_services

    services = build_services(settings, engine)
    mask = MaskingFormatter(logging.Formatter(), secret_values(settings)).mask
    try:
        operators = [("operators", lambda: _operators(settings))] if settings.admin_chat_ids else []
        return run_checks([
            ("telegram", lambda: _telegram(settings)),
            *operators,
            ("nowpayments", lambda: _nowpayments(services)),
            ("changenow", lambda: _changenow(services)),
            ("eth_rpc", lambda: _chain(services)),
            ("host_wallet", lambda: _wallet(services)),
        ], mask)
    finally:
        services.close()


@click.command()
def wallet() -> None:
    """The host wallet: address, ETH and USDT balances, what is owed, the margin."""
    from telepay.wiring import build_services

    settings = settings_or_exit()
    engine = engine_or_exit(settings)
    services = build_services(settings, engine)
    try:
        check = services.health.wallet_check()
    finally:
        services.close()
        engine.dispose()
    data = check.data
    if "address" not in data:
        click.echo(f"telepay: {data.get('note') or check.reason}", err=True)
        sys.exit(2)
    click.echo(f"address      {data['address']}")
    click.echo(f"ETH          worth {data['eth_usd']} USD (at {data['eth_price_usd']} USD/ETH); "
               f"owed {data['owed_eth_usd']} USD")
    click.echo(f"USDT         worth {data['usdt_usd']} USD; owed {data['owed_usdt_usd']} USD")
    click.echo(f"margin       {data['margin_usd']} USD wanted beyond what is owed")
    click.echo(f"status       {check.level}{': ' + check.reason if check.reason else ''}")
    sys.exit(0 if check.level == "ok" else 1)
