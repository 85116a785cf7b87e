"""The ChangeNOW sandbox over loopback HTTP, settling exchanges on the dev chain."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from eth_account import Account

from telepay.clients.http import tls_context
from telepay.clock import ManualClock
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox

KEY = "cn-sandbox-key"
HEADERS = {"x-changenow-api-key": KEY}
ETH_TO_USDT = {"fromCurrency": "eth", "fromNetwork": "eth", "toCurrency": "usdt", "toNetwork": "eth"}


@pytest.fixture(scope="module")
def chain():
    return DevChain()


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def changenow(chain, clock):
    with ChangeNowSandbox(KEY, chain, clock=clock, rate_limits=None) as sandbox:
        yield sandbox


def _get(sandbox, path, params, headers=HEADERS):
    answer = httpx.get(sandbox.base_url + path, params=params, headers=headers, verify=tls_context())
    return answer.status_code, json.loads(answer.text, parse_float=Decimal)


def _post(sandbox, body, headers=HEADERS):
    text = json.dumps({k: str(v) if isinstance(v, Decimal) else v for k, v in body.items()})
    for key, value in body.items():  # amounts as JSON numbers, written from the Decimal
        if isinstance(value, Decimal):
            text = text.replace(f'"{key}": "{value}"', f'"{key}": {value}')
    answer = httpx.post(sandbox.base_url + "/v2/exchange", content=text.encode(),
                        headers={**headers, "Content-Type": "application/json"}, verify=tls_context())
    return answer.status_code, json.loads(answer.text, parse_float=Decimal)


def _quote(sandbox, pair=ETH_TO_USDT, **amount):
    params = {**pair, "flow": "fixed-rate", "useRateId": "true", **amount}
    params.setdefault("type", "reverse" if "toAmount" in amount else "direct")
    status, body = _get(sandbox, "/v2/exchange/estimated-amount", params)
    assert status == 200, body
    return body


def _exchange(sandbox, address, pair=ETH_TO_USDT, **extra):
    quote = _quote(sandbox, pair, toAmount="40")
    body = {**pair, "toAmount": quote["toAmount"], "flow": "fixed-rate", "type": "reverse",
            "rateId": quote["rateId"], "address": address, **extra}
    status, created = _post(sandbox, body)
    assert status == 200, created
    return created


def _poll(sandbox, exchange_id, times):
    return [_get(sandbox, "/v2/exchange/by-id", {"id": exchange_id})[1]["status"] for _ in range(times)]


def test_fixed_rate_estimate_is_shaped_like_changenow(changenow):
    quote = _quote(changenow, fromAmount="0.02")
    assert quote["fromAmount"] == Decimal("0.02")
    # 0.02 ETH * 2500 * (1 - 1.5 %) - 1.5 USDT withdrawal fee
    assert quote["toAmount"] == Decimal("47.75")
    assert quote["withdrawalFee"] == Decimal("1.5") and quote["flow"] == "fixed-rate"
    assert len(quote["rateId"]) == 32 and quote["validUntil"].endswith("Z")


def test_reverse_needs_the_fixed_rate_flow(changenow):
    status, body = _get(changenow, "/v2/exchange/estimated-amount",
                        {**ETH_TO_USDT, "toAmount": "40", "type": "reverse", "flow": "standard"})
    assert status == 400 and body["error"] == "not_valid_params"


def test_range_and_minimums(changenow):
    status, fixed = _get(changenow, "/v2/exchange/range", {**ETH_TO_USDT, "flow": "fixed-rate"})
    assert status == 200 and fixed["minAmount"] == Decimal("0.004") and fixed["maxAmount"] == Decimal(20)
    _, standard = _get(changenow, "/v2/exchange/range", {**ETH_TO_USDT, "flow": "standard"})
    assert standard["maxAmount"] is None
    status, body = _get(changenow, "/v2/exchange/estimated-amount", {**ETH_TO_USDT, "fromAmount": "0.001"})
    assert status == 400 and body["error"] == "out_of_range" and "minimal" in body["message"]


@pytest.mark.parametrize("network, address, valid", [
    ("eth", "0x52908400098527886E0F7030069857D2E4169EE7", True),
    ("eth", "0x52908400098527886e0f7030069857d2e4169ee7", True),
    ("eth", "0x52908400098527886E0F7030069857D2E4169Ee7", False),  # broken checksum
    ("eth", "0x1234", False),
    ("trx", "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7", True),
    ("btc", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", True),
    ("btc", "0x52908400098527886E0F7030069857D2E4169EE7", False),
])
def test_validate_address(changenow, network, address, valid):
    status, body = _get(changenow, "/v2/validate/address", {"currency": network, "address": address}, headers={})
    assert status == 200 and body["result"] is valid
    assert (body["message"] is None) is valid


def test_unknown_key_is_401_and_unknown_currency_400(changenow):
    status, body = _get(changenow, "/v2/exchange/range", ETH_TO_USDT, headers={"x-changenow-api-key": "nope"})
    assert (status, body) == (401, {"error": "unauthorized", "message": "Unauthorized"})
    status, body = _get(changenow, "/v2/validate/address", {"currency": "xyz", "address": "a"})
    assert status == 400 and body["error"] == "not_valid_params"


def test_fixed_rate_creation_needs_a_live_matching_rate_id(changenow, clock):
    owner = Account.create().address
    base = {**ETH_TO_USDT, "toAmount": Decimal(40), "flow": "fixed-rate", "type": "reverse", "address": owner}
    assert _post(changenow, base)[1]["error"] == "not_valid_params"
    quote = _quote(changenow, toAmount="40")
    assert _post(changenow, {**base, "toAmount": Decimal(41), "rateId": quote["rateId"]})[0] == 400
    assert _post(changenow, {**base, "rateId": quote["rateId"], "address": "0x12"})[1]["error"] == "not_valid_address"
    clock.advance(timedelta(minutes=2))
    status, body = _post(changenow, {**base, "rateId": quote["rateId"]})
    assert (status, body["error"]) == (400, "rate_id_not_found_or_expired")


def test_funded_exchange_advances_to_finished_and_pays_the_owner(changenow, chain):
    owner = Account.create().address
    created = _exchange(changenow, owner)
    assert created["toAmount"] == Decimal(40) and created["payoutAddress"] == owner
    assert _poll(changenow, created["id"], 2) == ["waiting", "waiting"]
    chain.send_eth(chain.host_wallet, created["payinAddress"], created["fromAmount"])
    assert _poll(changenow, created["id"], 5) == ["confirming", "exchanging", "sending", "finished", "finished"]
    _, status = _get(changenow, "/v2/exchange/by-id", {"id": created["id"]})
    assert status["amountFrom"] == created["fromAmount"] and status["amountTo"] == Decimal(40)
    assert chain.balance_usdt(owner) == Decimal(40)
    assert chain.transfers_to(owner)[0].tx_hash == status["payoutHash"]
    assert status["payinHash"] == chain.transfers_to(created["payinAddress"])[0].tx_hash


def test_usdt_deposit_pays_out_eth(changenow, chain):
    owner = Account.create().address
    pair = {"fromCurrency": "usdt", "fromNetwork": "eth", "toCurrency": "eth", "toNetwork": "eth"}
    quote = _quote(changenow, pair, fromAmount="100")
    status, created = _post(changenow, {**pair, "fromAmount": quote["fromAmount"], "flow": "fixed-rate",
                                        "type": "direct", "rateId": quote["rateId"], "address": owner})
    assert status == 200
    chain.send_usdt(chain.host_wallet, created["payinAddress"], Decimal(100))
    assert changenow.settle(created["id"]) == "finished"
    assert chain.balance_eth(owner) == quote["toAmount"] == Decimal("0.0389")


def test_confirmations_wait_for_blocks(chain, clock):
    with ChangeNowSandbox(KEY, chain, confirmations=3, rate_limits=None, clock=clock) as changenow:
        created = _exchange(changenow, Account.create().address)
        chain.send_eth(chain.host_wallet, created["payinAddress"], created["fromAmount"])
        assert changenow.settle(created["id"]) == "confirming"
        chain.mine(2)
        assert changenow.settle(created["id"]) == "finished"


def test_other_amounts_convert_pro_rata_or_go_back(changenow, chain):
    half = _exchange(changenow, Account.create().address)
    chain.send_eth(chain.host_wallet, half["payinAddress"], half["fromAmount"] / 2)
    assert changenow.settle(half["id"]) == "finished"
    assert changenow.exchange(half["id"]).amount_to == Decimal(20)
    refund_to = Account.create().address
    tiny = _exchange(changenow, Account.create().address, refundAddress=refund_to)
    chain.send_eth(chain.host_wallet, tiny["payinAddress"], Decimal("0.001"))
    assert changenow.settle(tiny["id"]) == "refunded"
    assert chain.balance_eth(refund_to) == Decimal("0.001")
    lost = _exchange(changenow, Account.create().address)
    chain.send_eth(chain.host_wallet, lost["payinAddress"], Decimal("0.001"))
    assert changenow.settle(lost["id"]) == "failed"


def test_fixed_rate_exchange_without_deposit_expires(changenow, clock):
    created = _exchange(changenow, Account.create().address)
    assert changenow.settle(created["id"]) == "waiting"
    clock.advance(timedelta(minutes=21))
    assert _poll(changenow, created["id"], 1) == ["expired"]


def test_step_seconds_paces_the_statuses(chain, clock):
    with ChangeNowSandbox(KEY, chain, step_seconds=30, rate_limits=None, clock=clock) as changenow:
        created = _exchange(changenow, Account.create().address)
        assert _poll(changenow, created["id"], 2) == ["new", "new"]
        clock.advance(timedelta(seconds=31))
        assert _poll(changenow, created["id"], 2) == ["waiting", "waiting"]


def test_offchain_deposit_and_eth_payout(changenow, chain):
    owner = Account.create().address
    pair = {"fromCurrency": "btc", "fromNetwork": "btc", "toCurrency": "eth", "toNetwork": "eth"}
    status, created = _post(changenow, {**pair, "fromAmount": Decimal("0.01"), "flow": "standard",
                                        "address": owner})
    assert status == 200 and created["payinAddress"].startswith("bc1q")
    changenow.deposit(created["id"], Decimal("0.01"))
    assert changenow.settle(created["id"]) == "finished"
    assert chain.balance_eth(owner) == created["toAmount"]


def test_exchanges_are_private_to_their_key(changenow):
    created = _exchange(changenow, Account.create().address)
    changenow.add_api_key("someone-else")
    status, body = _get(changenow, "/v2/exchange/by-id", {"id": created["id"]},
                        headers={"x-changenow-api-key": "someone-else"})
    assert (status, body["error"]) == (404, "not_found")


def test_rate_limit_is_30_per_second(chain):
    with ChangeNowSandbox(KEY, chain) as changenow, httpx.Client(headers=HEADERS) as client:
        codes = [client.get(changenow.base_url + "/v2/exchange/range", params=ETH_TO_USDT).status_code
                 for _ in range(31)]
        assert codes[:30] == [200] * 30
        assert codes[30] == 429
        body = client.get(changenow.base_url + "/v2/exchange/range", params=ETH_TO_USDT).json()
        assert body["error"] == "too_many_requests"


def test_a_late_answer_still_created_the_exchange(changenow):
    changenow.fail_next("/v2/exchange", method="POST", delay=0.3)
    quote = _quote(changenow, toAmount="40")
    owner = Account.create().address
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(changenow.base_url + "/v2/exchange", headers=HEADERS, timeout=0.1, json={
            **ETH_TO_USDT, "toAmount": 40, "flow": "fixed-rate", "type": "reverse", "rateId": quote["rateId"],
            "address": owner, "userId": "payout-7"})
    status, listed = _get(changenow, "/v2/exchanges", {"userId": "payout-7", "limit": "99"})
    assert status == 200 and listed["count"] == 1
    [item] = listed["exchanges"]
    assert item["payout"]["address"] == owner and item["partnerInfo"]["userId"] == "payout-7"


def test_the_list_serves_the_documented_shape_and_refuses_a_limit_of_100(changenow, repo_root):
    documented = json.loads((repo_root / "tests" / "data" / "changenow-list-exchanges.json").read_text())
    created = _exchange(changenow, Account.create().address)
    status, listed = _get(changenow, "/v2/exchanges", {"limit": "99"})
    [item] = [i for i in listed["exchanges"] if i["requestId"] == created["id"]]
    want = documented["exchanges"][0]
    assert set(item) == set(want) and "id" not in item
    for side in ("payin", "payout", "refund", "partnerInfo"):
        assert set(item[side]) == set(want[side]), side
    assert item["payin"]["address"] == created["payinAddress"]
    assert _get(changenow, "/v2/exchanges", {"limit": "100"})[0] == 400


def test_without_partner_fields_the_tag_is_dropped_and_the_filter_ignored(chain):
    with ChangeNowSandbox(KEY, chain, partner_fields=False) as changenow:
        mine = _exchange(changenow, Account.create().address, userId="payout-8")
        other = _exchange(changenow, Account.create().address)
        status, listed = _get(changenow, "/v2/exchanges", {"userId": "payout-8", "limit": "10"})
    assert status == 200 and {i["requestId"] for i in listed["exchanges"]} == {mine["id"], other["id"]}
    assert all(i["partnerInfo"]["userId"] is None for i in listed["exchanges"])


def test_injected_errors_look_like_changenow(changenow):
    changenow.fail_next("/v2/exchange/range", status=503, retry_after=1)
    answer = httpx.get(changenow.base_url + "/v2/exchange/range", params=ETH_TO_USDT, headers=HEADERS)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert set(answer.json()) == {"error", "message"}
