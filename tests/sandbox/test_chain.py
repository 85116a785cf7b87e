"""The dev chain: funded host wallet, the test USDT token, transfers, JSON-RPC over HTTP."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3RPCError

from telepay_sandbox.chain import HOST_WALLET_PRIVATE_KEY, DevChain, from_units, to_units

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "telepay_sandbox" / "contracts" / "TestUSDT.json"
# The standard ERC-20 `transfer` that returns a bool: what a naive caller decodes with.
BOOL_TRANSFER_ABI = [{
    "type": "function", "name": "transfer", "stateMutability": "nonpayable",
    "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
    "outputs": [{"name": "", "type": "bool"}],
}]


@pytest.fixture(scope="module")
def chain():
    with DevChain() as dev_chain:
        yield dev_chain


def _sign_and_send(w3: Web3, key: str, tx: dict) -> tuple[bytes, dict]:
    """What the host wallet does: sign locally, send the raw bytes, wait for the receipt."""
    account = Account.from_key(key)
    tx = {"chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(account.address),
          "maxFeePerGas": 3 * w3.eth.gas_price, "maxPriorityFeePerGas": w3.eth.max_priority_fee, **tx}
    raw = account.sign_transaction(tx).raw_transaction
    tx_hash = w3.eth.send_raw_transaction(raw)
    return raw, w3.eth.wait_for_transaction_receipt(tx_hash, timeout=5)


def test_artifact_is_compiled_from_the_committed_source():
    artifact = json.loads(ARTIFACT.read_text())
    source = (ROOT / "contracts" / "TestUSDT.sol").read_bytes()
    assert artifact["sourceSha256"] == hashlib.sha256(source).hexdigest(), "run contracts/compile.sh"
    assert artifact["compiler"]["evmVersion"] == "cancun"
    assert artifact["bytecode"].startswith("0x60")


def test_host_wallet_is_funded_with_the_fixed_sandbox_key(chain):
    assert chain.host_wallet.address == Account.from_key(HOST_WALLET_PRIVATE_KEY).address
    assert chain.balance_eth(chain.host_wallet.address) == Decimal(100)
    assert chain.balance_usdt(chain.host_wallet.address) == Decimal(100000)
    env = chain.env()
    assert env == {"ETH_RPC_URL": chain.rpc_url, "HOST_WALLET_PRIVATE_KEY": HOST_WALLET_PRIVATE_KEY,
                   "USDT_CONTRACT_ADDRESS": chain.usdt_address, "ETH_CHAIN_ID": str(chain.chain_id),
                   "ETH_CONFIRMATIONS": "1"}


def test_usdt_has_six_decimals(chain):
    assert chain.usdt.functions.decimals().call() == 6
    assert chain.usdt.functions.symbol().call() == "USDT"


def test_erc20_transfer_credits_the_recipient_and_is_listed(chain):
    owner = Account.create().address
    data = chain.usdt.encode_abi("transfer", [owner, 12_345_678])
    _, receipt = _sign_and_send(chain.w3, HOST_WALLET_PRIVATE_KEY,
                                {"to": chain.usdt_address, "data": data, "gas": 100_000})
    assert receipt["status"] == 1
    assert chain.balance_usdt(owner) == Decimal("12.345678")
    [transfer] = chain.transfers_to(owner)
    assert (transfer.asset, transfer.amount, transfer.from_address) == ("usdt", Decimal("12.345678"),
                                                                         chain.host_wallet.address)
    assert transfer.tx_hash == receipt["transactionHash"].to_0x_hex()


def test_failed_transfer_is_a_receipt_with_status_zero_and_moves_nothing(chain):
    poor = chain.new_account(eth=Decimal("0.01"))
    data = chain.usdt.encode_abi("transfer", [chain.host_wallet.address, 1])
    _, receipt = _sign_and_send(chain.w3, poor.key.to_0x_hex(),
                                {"to": chain.usdt_address, "data": data, "gas": 100_000})
    assert receipt["status"] == 0
    failed = receipt["transactionHash"].to_0x_hex()
    assert all(t.tx_hash != failed for t in chain.transfers_to(chain.host_wallet.address))


def test_transfer_returns_no_bool_like_mainnet_tether(chain):
    naive = chain.w3.eth.contract(address=chain.usdt_address, abi=BOOL_TRANSFER_ABI)
    with pytest.raises(Exception):
        naive.functions.transfer(Account.create().address, 1).call({"from": chain.host_wallet.address})


def test_approve_from_nonzero_to_nonzero_reverts(chain):
    holder = chain.new_account(eth=Decimal("0.1"))
    spender = Account.create().address
    first = chain.usdt.encode_abi("approve", [spender, 5])
    assert _sign_and_send(chain.w3, holder.key.to_0x_hex(), {"to": chain.usdt_address, "data": first,
                                                              "gas": 100_000})[1]["status"] == 1
    second = chain.usdt.encode_abi("approve", [spender, 7])
    assert _sign_and_send(chain.w3, holder.key.to_0x_hex(), {"to": chain.usdt_address, "data": second,
                                                              "gas": 100_000})[1]["status"] == 0


def test_helpers_move_money_and_track_eth_transfers(chain):
    alice = chain.new_account(eth=Decimal("1.5"), usdt=Decimal("10"))
    bob = Account.create().address
    chain.send_eth(alice, bob, Decimal("0.25"))
    chain.send_usdt(alice, bob, Decimal("2.5"))
    assert chain.balance_eth(bob) == Decimal("0.25")
    assert chain.balance_usdt(bob) == Decimal("2.5")
    assert [(t.asset, t.amount) for t in chain.transfers_to(bob)] == [("eth", Decimal("0.25")),
                                                                      ("usdt", Decimal("2.5"))]
    assert chain.balance_eth(alice.address) < Decimal("1.25")  # gas was paid


def test_mining_adds_blocks(chain):
    before = chain.block_number
    chain.mine(3)
    assert chain.block_number == before + 3


def test_units_refuse_digits_the_asset_cannot_hold():
    assert to_units(Decimal("1.5"), 6) == 1_500_000
    assert from_units(1_500_000, 6) == Decimal("1.5")
    with pytest.raises(ValueError):
        to_units(Decimal("0.0000001"), 6)


def test_http_json_rpc_serves_a_separate_web3(chain):
    w3 = Web3(HTTPProvider(chain.rpc_url))
    assert w3.eth.chain_id == chain.w3.eth.chain_id
    assert w3.eth.block_number == chain.block_number
    recipient = Account.create().address
    raw, receipt = _sign_and_send(w3, HOST_WALLET_PRIVATE_KEY, {"to": recipient, "value": 10**15, "gas": 21_000})
    assert receipt["status"] == 1
    assert w3.eth.get_balance(recipient) == 10**15
    # Re-broadcasting a mined transaction fails as on a real node; the receipt is still there.
    with pytest.raises(Web3RPCError, match="nonce too low"):
        w3.eth.send_raw_transaction(raw)
    assert w3.eth.get_transaction_receipt(receipt["transactionHash"])["status"] == 1
    usdt = w3.eth.contract(address=chain.usdt_address, abi=chain.usdt.abi)
    assert from_units(usdt.functions.balanceOf(chain.host_wallet.address).call(), 6) == \
        chain.balance_usdt(chain.host_wallet.address)


def test_http_json_rpc_answers_batches_and_errors_in_json_rpc(chain):
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
             {"jsonrpc": "2.0", "id": 2, "method": "eth_noSuchMethod", "params": []}]
    answers = httpx.post(chain.rpc_url, json=batch).json()
    assert answers[0] == {"jsonrpc": "2.0", "id": 1, "result": hex(chain.w3.eth.chain_id)}
    assert answers[1]["id"] == 2 and "error" in answers[1]
    assert httpx.post(chain.rpc_url, content=b"{not json").json()["error"]["code"] == -32700


def _signed(w3, sender, nonce, to, fee, tip, gas=21_000):
    return sender.sign_transaction({"chainId": w3.eth.chain_id, "nonce": nonce, "to": to, "value": 10**12,
                                    "gas": gas, "maxFeePerGas": fee, "maxPriorityFeePerGas": tip}).raw_transaction


def test_held_transactions_wait_below_the_fee_floor_and_replacements_need_ten_percent(chain):
    w3 = Web3(HTTPProvider(chain.rpc_url))  # as a separate process sees the chain
    sender = chain.new_account(eth=Decimal(1))
    to = Account.create().address
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    cap, tip = 2 * base + 10**9, 10**9
    chain.hold(fee_floor_wei=cap * 2)
    try:
        first = w3.eth.send_raw_transaction(_signed(w3, sender, 0, to, cap, tip))
        chain.mine()
        assert chain.pending() == [first.to_0x_hex()] and chain.nonce(sender.address) == 0
        with pytest.raises(Web3RPCError, match="replacement transaction underpriced"):
            w3.eth.send_raw_transaction(_signed(w3, sender, 0, to, cap * 109 // 100, tip * 2))
        with pytest.raises(Web3RPCError, match="replacement transaction underpriced"):
            w3.eth.send_raw_transaction(_signed(w3, sender, 0, to, cap * 3, tip))
        w3.eth.send_raw_transaction(_signed(w3, sender, 0, to, cap, tip))  # the same bytes: already known
        second = w3.eth.send_raw_transaction(_signed(w3, sender, 0, to, cap * 2, tip * 11 // 10))
        assert chain.pending() == [second.to_0x_hex()]  # one per nonce: the new version took its place
        chain.mine()
        assert chain.pending() == [] and chain.nonce(sender.address) == 1
        assert w3.eth.get_transaction_receipt(second)["status"] == 1
        with pytest.raises(Web3RPCError, match="nonce too low"):
            w3.eth.send_raw_transaction(_signed(w3, sender, 0, to, cap, tip))  # the old version: too late
    finally:
        chain.release()
    assert not chain.holding


def test_release_mines_what_waits(chain):
    w3 = chain.w3
    sender = chain.new_account(eth=Decimal(1))
    chain.hold(fee_floor_wei=10**30)
    sent = w3.eth.send_raw_transaction(_signed(w3, sender, 0, Account.create().address, 10**10, 10**9))
    chain.release()
    assert w3.eth.get_transaction_receipt(sent)["status"] == 1


def test_a_contract_wallet_needs_more_than_21000_gas(chain):
    wallet = chain.deploy_contract_wallet()
    w3 = chain.w3
    sender = chain.new_account(eth=Decimal(1))
    assert w3.eth.estimate_gas({"from": sender.address, "to": wallet, "value": 10**12}) > 21_000
    sent = w3.eth.send_raw_transaction(_signed(w3, sender, 0, wallet, 10**10, 10**9))
    assert w3.eth.get_transaction_receipt(sent)["status"] == 0  # 21,000 runs out in its fallback
    assert chain.transfers_to(wallet) == []
