"""`telepay check-config --online` against the sandboxes with the real credentials, then with one
bad credential at a time: exactly that line says FAIL. `telepay wallet` shows the host wallet."""

from __future__ import annotations

import pytest

from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import TelegramSandbox

TOKEN = "111:e2e-online-token"


@pytest.fixture(scope="module")
def sandboxes():
    with DevChain() as chain, TelegramSandbox(token=TOKEN, bot_username="OnlineBot") as telegram, \
            ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None) as changenow, \
            NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret") as nowpayments:
        yield chain, telegram, changenow, nowpayments


def lines(sandboxes, database_url, tmp_path, **bad):
    chain, telegram, changenow, nowpayments = sandboxes
    env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="OnlineBot", data_dir=tmp_path,
                      database_url=database_url, nowpayments_base_url=nowpayments.base_url,
                      changenow_base_url=changenow.base_url, chain_env=chain.env(), extra=bad)
    result = TelepayProcess(env, tmp_path / "log").telepay("check-config", "--online", timeout=120)
    status = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()
              if len(line.split()) > 1 and line.split()[1] in ("OK", "FAIL") and line.split()[0] in SERVICES}
    return result, status


SERVICES = ("telegram", "operators", "nowpayments", "changenow", "eth_rpc", "host_wallet")


def test_all_good(sandboxes, database_url, session_factory, tmp_path):
    operator = sandboxes[1].create_user("Olga")
    operator.send("/start")
    result, status = lines(sandboxes, database_url, tmp_path, ADMIN_CHAT_IDS=str(operator.id))
    assert status == {name: "OK" for name in SERVICES}, result.stdout + result.stderr
    assert result.returncode == 0 and "configuration OK" in result.stdout
    assert "@OnlineBot" in result.stdout


@pytest.mark.parametrize("setting,value,failing", [
    ("TELEGRAM_BOT_TOKEN", "222:revoked-token", {"telegram"}),
    ("NOWPAYMENTS_API_KEY", "wrong-nowpayments-key", {"nowpayments"}),
    ("CHANGENOW_API_KEY", "wrong-changenow-key", {"changenow"}),
    ("ETH_CHAIN_ID", "1", {"eth_rpc"}),
])
def test_one_bad_credential_fails_its_line_only(sandboxes, database_url, session_factory, tmp_path,
                                                setting, value, failing):
    operator = sandboxes[1].create_user("Olga")
    operator.send("/start")
    extra = {"ADMIN_CHAT_IDS": str(operator.id), setting: value}
    if setting == "TELEGRAM_BOT_TOKEN":
        failing = failing | {"operators"}  # asked through the same refused token
    result, status = lines(sandboxes, database_url, tmp_path, **extra)
    assert {name for name, word in status.items() if word == "FAIL"} == failing, result.stdout + result.stderr
    assert set(status) == set(SERVICES)
    assert result.returncode == 1
    assert value not in result.stdout + result.stderr or setting == "ETH_CHAIN_ID"  # secrets never printed


def test_an_operator_who_never_started_the_bot_is_named(sandboxes, database_url, session_factory, tmp_path):
    started, silent = sandboxes[1].create_user("Olga"), sandboxes[1].create_user("Ivan")
    started.send("/start")
    result, status = lines(sandboxes, database_url, tmp_path, ADMIN_CHAT_IDS=f"{started.id},{silent.id}")
    assert status["operators"] == "FAIL" and result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if line.startswith("operators")]
    assert str(silent.id) in line and str(started.id) not in line and "/start" in line


def test_wallet_shows_the_host_address_balances_owed_and_margin(sandboxes, database_url, session_factory, tmp_path):
    chain, telegram, changenow, nowpayments = sandboxes
    env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="OnlineBot", data_dir=tmp_path,
                      database_url=database_url, nowpayments_base_url=nowpayments.base_url,
                      changenow_base_url=changenow.base_url, chain_env=chain.env())
    result = TelepayProcess(env, tmp_path / "log").telepay("wallet", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "address      0x" in out and "USDT         worth 100000.00 USD; owed 0 USD" in out
    assert "margin       100 USD" in out and "status       ok" in out
