"""The handlers' context, typed: `context.services`, `context.limits`, `context.provider_pool`,
`context.rights`.

As in python-telegram-bot's `contexttypesbot.py` example: a `CallbackContext` subclass whose
properties read what `build_application` put in `bot_data` once, installed with
`ContextTypes(context=TelePayContext)`. Handlers never index `bot_data` themselves.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from telegram.ext import Application, CallbackContext, ContextTypes, ExtBot

from telepay.bot.limits import UserLimits
from telepay.services.rights import ChannelRights
from telepay.wiring import Services

_SERVICES, _LIMITS, _PROVIDER_POOL, _RIGHTS = "services", "limits", "provider_pool", "rights"


class TelePayContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    @property
    def services(self) -> Services:
        services: Services = self.bot_data[_SERVICES]
        return services

    @property
    def limits(self) -> UserLimits:
        limits: UserLimits = self.bot_data[_LIMITS]
        return limits

    @property
    def provider_pool(self) -> ThreadPoolExecutor:
        pool: ThreadPoolExecutor = self.bot_data[_PROVIDER_POOL]
        return pool

    @property
    def rights(self) -> ChannelRights:
        return rights(self.application)


CONTEXT_TYPES = ContextTypes(context=TelePayContext)


def install(application: Application[Any, Any, Any, Any, Any, Any], services: Services, limits: UserLimits,
            provider_pool: ThreadPoolExecutor, rights: ChannelRights) -> None:
    """Put what the context's properties read into `bot_data` (not persisted: see persistence)."""
    application.bot_data.update({_SERVICES: services, _LIMITS: limits, _PROVIDER_POOL: provider_pool,
                                 _RIGHTS: rights})


def provider_pool(application: Application[Any, Any, Any, Any, Any, Any]) -> ThreadPoolExecutor:
    pool: ThreadPoolExecutor = application.bot_data[_PROVIDER_POOL]
    return pool


def rights(application: Application[Any, Any, Any, Any, Any, Any]) -> ChannelRights:
    """The bot's channel-rights checker (the rights timer uses it too)."""
    checker: ChannelRights = application.bot_data[_RIGHTS]
    return checker
