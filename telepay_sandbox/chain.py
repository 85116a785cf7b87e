"""A dev Ethereum chain for tests, the demo and benchmarks: eth-tester on py-evm, in-process.

`DevChain` owns the chain, the test USDT token (6 decimals, compiled from
`contracts/TestUSDT.sol`), a funded host wallet with a fixed sandbox key, and two ways in:
`chain.w3` (an in-process web3 provider) and `chain.rpc_url` after `start()` (JSON-RPC over
loopback HTTP, for a separate `telepay run` process via `ETH_RPC_URL`). Every transaction is
mined into its own block at once (auto-mining); `mine()` adds empty blocks for confirmations.

Stuck transactions, for real: `hold(fee_floor_wei=...)` turns auto-mining off, so transactions
wait in the pool as on a busy mainnet; `mine()` then includes only those whose `maxFeePerGas`
reaches the floor (a base fee above what they offered), and `release()` mines the rest and
turns auto-mining back on. While holding, a transaction with the nonce of one in the pool
replaces it only when both fee caps are at least 10 % higher, as geth demands ("replacement
transaction underpriced" otherwise); those node rules live in `chain_node`. The helpers below
wait for their own receipts, so they need auto-mining: don't call them while holding.

Helpers speak Decimal in whole units (ETH, USDT), never floats: `balance_eth`, `balance_usdt`,
`send_eth`, `send_usdt`, `mint_usdt`, `new_account`, and `transfers_to(address)`, which lists
successful top-level ETH transfers and USDT `Transfer` events (ETH moved by contracts
internally is not traced).

py-evm is not thread-safe, so one re-entrant lock serialises every call into the chain, from
web3 in this process and from the HTTP bridge alike.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from telepay_sandbox.chain_node import LockedProvider, fees_of
from telepay_sandbox.chain_rpc import JsonRpcApp
from telepay_sandbox.loopback import LoopbackServer

# Fixed so a sandbox run can be configured ahead of time (keccak256 of "telepay sandbox host wallet").
# It guards nothing: the dev chain exists only inside this process.
HOST_WALLET_PRIVATE_KEY = "0x095ce85e1f67fec4380de60e3125cec5df4afa92f63c28823abf347644e7f655"
USDT_DECIMALS = 6
ETH_DECIMALS = 18
_ARTIFACT = Path(__file__).with_name("contracts") / "TestUSDT.json"
_PRIORITY_FEE_WEI = 10**9
# Gas for the faucet's mint of the test token: two storage writes and a log, under 60,000 gas.
# Given, not estimated: eth-tester estimates by running the call some twenty times, and the
# sandboxes mint into every wallet they make (a ChangeNOW sandbox's hot wallet: one per test).
_MINT_GAS = 120_000
# A contract wallet: its payable fallback counts deposits and stores each one in a fresh slot
# (two storage writes, ~44,000 gas on top of the transfer), so 21,000 gas is not enough to pay
# it, as with a Safe or a smart account. Init code copies the 14-byte runtime and returns it.
CONTRACT_WALLET_CODE = "0x600e600c600039600e6000f3" + "6000546001018060005534905500"


def to_units(amount: Decimal, decimals: int) -> int:
    """Whole units (e.g. ETH) to base units (wei); refuses digits the asset cannot hold."""
    scaled = Decimal(amount).scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more than {decimals} decimal places")
    return int(scaled)


def from_units(value: int, decimals: int) -> Decimal:
    return Decimal(value).scaleb(-decimals)


@dataclass(frozen=True)
class Transfer:
    """One successful movement of ETH or USDT as the chain recorded it."""

    asset: str  # "eth" or "usdt"
    tx_hash: str
    block_number: int
    from_address: str
    to_address: str
    amount: Decimal  # whole units
    log_index: int | None = None  # USDT only


class DevChain:
    def __init__(self, *, host_wallet_eth: Decimal = Decimal("100"),
                 host_wallet_usdt: Decimal = Decimal("100000"),
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        backend = PyEVMBackend()
        self.tester = EthereumTester(backend)
        self.provider = LockedProvider(self.tester, self.lock)
        self.w3 = Web3(self.provider)
        # eth-tester's first genesis account (1,000,000 ETH) is the faucet and the token owner.
        self._faucet: LocalAccount = Account.from_key(backend.account_keys[0])
        artifact = json.loads(_ARTIFACT.read_text())
        receipt = self._transact(self._faucet, {"data": artifact["bytecode"]})
        self.usdt_address: str = receipt["contractAddress"]
        self.usdt = self.w3.eth.contract(address=self.usdt_address, abi=artifact["abi"])
        self._transfer_topic = HexBytes(Web3.keccak(text="Transfer(address,address,uint256)"))
        self.host_wallet: LocalAccount = Account.from_key(HOST_WALLET_PRIVATE_KEY)
        self.fund_eth(self.host_wallet.address, host_wallet_eth)
        self.mint_usdt(self.host_wallet.address, host_wallet_usdt)
        self._scanned = -1
        self._transfers: dict[str, list[Transfer]] = {}
        self.fee_floor_wei: int | None = None
        bare = Web3(self.provider, middleware=[])
        self._rpc = LoopbackServer(JsonRpcApp(self.provider.request_func(bare, bare.middleware_onion)),
                                   "eth-rpc", host, port)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DevChain:
        """Serve JSON-RPC over loopback HTTP (the in-process `w3` works without it)."""
        self._rpc.start()
        return self

    def stop(self) -> None:
        self._rpc.stop()

    def __enter__(self) -> DevChain:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def rpc_url(self) -> str:
        return self._rpc.origin + "/"

    @property
    def chain_id(self) -> int:
        return self.w3.eth.chain_id

    def env(self) -> dict[str, str]:
        """The settings a `telepay run` process needs to use this chain and its host wallet."""
        return {"ETH_RPC_URL": self.rpc_url, "HOST_WALLET_PRIVATE_KEY": HOST_WALLET_PRIVATE_KEY,
                "USDT_CONTRACT_ADDRESS": self.usdt_address, "ETH_CHAIN_ID": str(self.chain_id),
                # One block on top: the dev chain mines only when something is sent.
                "ETH_CONFIRMATIONS": "1"}

    # ---- accounts and money ------------------------------------------------------------------

    @property
    def block_number(self) -> int:
        return self.w3.eth.block_number

    def mine(self, blocks: int = 1) -> None:
        """Mine `blocks` blocks; while holding, the first takes the pool's transactions that
        reach the fee floor (all of them without one)."""
        with self.lock:
            if self.holding and self.fee_floor_wei is not None:
                pool = self.tester._pending_transactions
                below = [tx for tx in pool if fees_of(tx)[0] < self.fee_floor_wei]
                self.tester._pending_transactions = [tx for tx in pool if tx not in below]
                try:
                    self.tester.mine_blocks(blocks)
                finally:
                    self.tester._pending_transactions = below
            else:
                self.tester.mine_blocks(blocks)

    @property
    def holding(self) -> bool:
        return not self.tester.auto_mine_transactions

    def hold(self, fee_floor_wei: int | None = None, *, refuse_below_floor: bool = False) -> None:
        """Stop auto-mining: transactions wait in the pool until `mine()` (see the module docstring).
        With `refuse_below_floor`, one offering less than the floor is refused outright, as some
        hosted RPCs do ("max fee per gas less than block base fee"), and nothing is kept."""
        with self.lock:
            self.tester.disable_auto_mine_transactions()
            self.fee_floor_wei = fee_floor_wei
            self.provider.fee_floor_wei, self.provider.refuse_below_floor = fee_floor_wei, refuse_below_floor

    def release(self) -> None:
        """Mine everything waiting and go back to auto-mining."""
        with self.lock:
            self.fee_floor_wei = None
            self.provider.fee_floor_wei, self.provider.refuse_below_floor = None, False
            if self.holding:
                self.tester.enable_auto_mine_transactions()

    def pending(self) -> list[str]:
        """Hashes of the transactions waiting in the pool (while holding)."""
        with self.lock:
            return [str(tx["hash"]) for tx in self.tester._pending_transactions]

    def nonce(self, address: str) -> int:
        """Transactions mined from `address` (the pool does not count)."""
        return self.w3.eth.get_transaction_count(to_checksum_address(address), "latest")

    def deploy_contract_wallet(self) -> str:
        """A contract whose payable fallback needs far more than 21,000 gas (see CONTRACT_WALLET_CODE)."""
        return self._transact(self._faucet, {"data": CONTRACT_WALLET_CODE})["contractAddress"]

    def new_account(self, eth: Decimal = Decimal(0), usdt: Decimal = Decimal(0)) -> LocalAccount:
        account = Account.create()
        if eth:
            self.fund_eth(account.address, eth)
        if usdt:
            self.mint_usdt(account.address, usdt)
        return account

    def balance_eth(self, address: str) -> Decimal:
        return from_units(self.w3.eth.get_balance(to_checksum_address(address)), ETH_DECIMALS)

    def balance_usdt(self, address: str) -> Decimal:
        raw = self.usdt.functions.balanceOf(to_checksum_address(address)).call()
        return from_units(raw, USDT_DECIMALS)

    def fund_eth(self, address: str, amount: Decimal) -> str:
        return self.send_eth(self._faucet, address, amount)

    def mint_usdt(self, address: str, amount: Decimal) -> str:
        data = self.usdt.encode_abi("mint", [to_checksum_address(address), to_units(amount, USDT_DECIMALS)])
        tx = {"to": self.usdt_address, "data": data, "gas": _MINT_GAS}
        return self._transact(self._faucet, tx)["transactionHash"].to_0x_hex()

    def send_eth(self, sender: LocalAccount, to: str, amount: Decimal) -> str:
        """Send ETH and return the transaction hash; raises if the chain refuses it."""
        tx = {"to": to_checksum_address(to), "value": to_units(amount, ETH_DECIMALS), "gas": 21_000}
        return self._transact(sender, tx)["transactionHash"].to_0x_hex()

    def send_usdt(self, sender: LocalAccount, to: str, amount: Decimal) -> str:
        data = self.usdt.encode_abi("transfer", [to_checksum_address(to), to_units(amount, USDT_DECIMALS)])
        tx = {"to": self.usdt_address, "data": data}
        return self._transact(sender, tx)["transactionHash"].to_0x_hex()

    def _transact(self, sender: LocalAccount, tx: dict[str, Any]) -> Any:
        with self.lock:  # the nonce read and the send must not interleave with another sender's
            base_fee = self.w3.eth.get_block("latest")["baseFeePerGas"]
            tx = {"chainId": self.w3.eth.chain_id, "from": sender.address, "value": 0,
                  "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
                  "maxPriorityFeePerGas": _PRIORITY_FEE_WEI,
                  "maxFeePerGas": 2 * base_fee + _PRIORITY_FEE_WEI, **tx}
            if "gas" not in tx:
                tx["gas"] = self.w3.eth.estimate_gas(tx) * 2
            signed = sender.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.to_0x_hex()} failed on the dev chain")
        return receipt

    # ---- what happened -----------------------------------------------------------------------

    def transfers_to(self, address: str, asset: str | None = None) -> list[Transfer]:
        """Successful ETH and USDT transfers to `address`, oldest first."""
        with self.lock:
            self._index()
            found = list(self._transfers.get(to_checksum_address(address), ()))
        return [t for t in found if asset is None or t.asset == asset]

    def _index(self) -> None:
        # Incremental: each call reads only the blocks mined since the last one.
        latest = self.w3.eth.block_number
        for number in range(self._scanned + 1, latest + 1):
            block = self.w3.eth.get_block(number, full_transactions=True)
            for tx in block["transactions"]:
                receipt = self.w3.eth.get_transaction_receipt(tx["hash"])
                if receipt["status"] != 1:
                    continue
                if tx["value"] > 0 and tx["to"]:
                    self._add(Transfer("eth", tx["hash"].to_0x_hex(), number, tx["from"], tx["to"],
                                       from_units(tx["value"], ETH_DECIMALS)))
                for log in receipt["logs"]:
                    if log["address"] == self.usdt_address and log["topics"][0] == self._transfer_topic:
                        event = self.usdt.events.Transfer().process_log(log)
                        self._add(Transfer("usdt", tx["hash"].to_0x_hex(), number, event["args"]["from"],
                                           event["args"]["to"], from_units(event["args"]["value"], USDT_DECIMALS),
                                           log["logIndex"]))
            self._scanned = number

    def _add(self, transfer: Transfer) -> None:
        self._transfers.setdefault(to_checksum_address(transfer.to_address), []).append(transfer)
