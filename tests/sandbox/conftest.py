"""Fixtures for the Telegram sandbox's own tests: a running sandbox, a raw Bot API client, a
channel where the bot is an administrator, and the Bot API reference as an oracle."""

from __future__ import annotations

import httpx
import pytest

from telepay.clients.http import tls_context
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from tests.sandbox.bot_api_reference import Reference, reference_path


class RawBotApi:
    """Calls the sandbox as a bot would, without a library in between."""

    def __init__(self, sandbox: TelegramSandbox) -> None:
        self.url = sandbox.base_url + sandbox.token
        self.http = httpx.Client(timeout=30, verify=tls_context())  # not a CA bundle read per test

    def __call__(self, method: str, **params) -> dict:
        return self.http.post(f"{self.url}/{method}", json=params).json()

    def result(self, method: str, **params):
        """The result of a call that must succeed."""
        answer = self(method, **params)
        assert answer["ok"], answer
        return answer["result"]

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RawBotApi:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@pytest.fixture
def sandbox():
    """A running sandbox without rate limits (tests about limits set their own)."""
    with TelegramSandbox(rate_limits=RateLimits.off()) as running:
        yield running
        assert running.errors == [], "the sandbox failed internally"


@pytest.fixture
def api(sandbox):
    client = RawBotApi(sandbox)
    yield client
    client.close()


@pytest.fixture
def channel(sandbox):
    """A private channel whose owner made the bot an administrator with default rights."""
    owner = sandbox.create_user("Owner", "channel_owner")
    chat = sandbox.create_channel("Closed Club", creator=owner)
    sandbox.add_admin(chat, sandbox.bot)
    return chat


@pytest.fixture
def alice(sandbox):
    """A person who has started the bot."""
    person = sandbox.create_user("Alice", "alice")
    person.command("start")
    return person


@pytest.fixture(scope="session")
def reference() -> Reference:
    path = reference_path()
    if not path.exists():
        pytest.fail(f"Bot API reference not found at {path}; set TELEGRAM_BOT_API_REFERENCE")
    return Reference.load(path)
