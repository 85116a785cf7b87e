"""The host wallet: ETH and USDT (ERC-20) transfers signed locally, each sent at most once.

At most once, whatever crashes: a transfer is signed, then stored (raw bytes, hash, nonce) in its
own committed transaction, and only then broadcast. Every later attempt for the same payout finds
the stored row and re-broadcasts the *same bytes* or finds the receipt; it never signs another
transfer (`chain_transactions.payout_id` is unique, so the database refuses a second one too).

A transfer stuck unmined (its fee cap below a risen base fee) is *replaced*: the same nonce, both
fee caps raised (see `fees`), signed, stored as a new attempt, then broadcast. One nonce can be
mined once, so however many versions exist, at most one of them pays; every hash ever signed is
kept (`chain_tx_attempts`) and whichever is mined counts. A transfer is final after
`confirmations` blocks, its own included.

One sender per host address: nonces are chosen, transactions signed and broadcast under a
PostgreSQL advisory lock named after the address, so several workers or processes never race
for a nonce. Before signing a new transfer, the sender first re-broadcasts any stored transfer
the chain has not seen yet, so a crash after signing never leaves a nonce gap behind.

Balances are checked before gas is estimated: mainnet Tether's `transfer` reverts through
`assert` on a shortfall, and a revert in estimation would hide the real cause (`InsufficientFunds`,
which alerts the operators) behind a generic failure.

What is written down at each step (the stored transfers and their versions) is `transfers`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Callable, cast

from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError
from web3.types import TxParams

from telepay.clock import Clock
from telepay.models import ChainTxStatus
from telepay.services.payouts import fees
from telepay.services.payouts.locks import advisory_lock
from telepay.services.payouts.transfers import StoredTx, TransferRecords

logger = logging.getLogger(__name__)

ETH, USDT = "ETH", "USDT"
_ERC20_ABI = [
    {"name": "transfer", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": []},  # Tether's transfer returns nothing; asking for a bool would fail to decode
    {"name": "balanceOf", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "who", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
]
# Messages a node gives for a transaction it already has or has already mined, or for a version
# of ours it holds that pays more (only our own newest version can: we sign every one of them).
_ALREADY = ("already known", "known transaction", "nonce too low", "already imported",
            "replacement transaction underpriced")

# What a node (hosted RPCs above all) answers for a fee cap below the current base fee: it keeps
# nothing, so the transfer waits, stored, until it is replaced with fees that are enough.
_FEE_TOO_LOW = ("less than block base fee", "fee cap less than", "feecap too low", "transaction underpriced")

Checkpoint = Callable[[str], None]


class InsufficientFunds(Exception):
    """The host wallet cannot cover a transfer and its gas; operators must top it up."""

    def __init__(self, asset: str, have: int, need: int):
        super().__init__(f"host wallet has {have} {asset} base units, needs {need}")
        self.asset, self.have, self.need = asset, have, need


class TransferRefused(Exception):
    """The stored transaction can never be mined (its nonce went to another) or it reverted."""


class WrongChain(Exception):
    """ETH_RPC_URL serves another chain than ETH_CHAIN_ID: nothing may be signed for it."""


class HostWallet:
    def __init__(self, w3: Web3, private_key: str, usdt_address: str, session_factory: sessionmaker[Session],
                 clock: Clock, *, chain_id: int, confirmations: int = 1,
                 replace_after: timedelta = timedelta(seconds=180), priority_fee_wei: int = 10**9,
                 checkpoint: Checkpoint | None = None):
        if confirmations < 1:
            raise ValueError("a transfer needs at least its own block")
        self.w3 = w3
        self._account = Account.from_key(private_key)
        self.address: ChecksumAddress = self._account.address
        self.usdt = w3.eth.contract(address=Web3.to_checksum_address(usdt_address), abi=_ERC20_ABI)
        self.session_factory = session_factory
        self.engine: Engine = session_factory.kw["bind"]
        self.clock = clock
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.replace_after = replace_after
        self.priority_fee_wei = priority_fee_wei
        self.checkpoint = checkpoint or (lambda name: None)
        self.records = TransferRecords(session_factory, clock, self.address)
        self._chain_checked = False

    def __repr__(self) -> str:  # the key must never show up in a log or a traceback
        return f"HostWallet({self.address})"

    # ---- reading ---------------------------------------------------------------------------------

    def check_chain(self) -> None:
        """Raise WrongChain unless the RPC serves the configured chain (asked once per wallet)."""
        if self._chain_checked:
            return
        served = self.w3.eth.chain_id
        if served != self.chain_id:
            raise WrongChain(f"ETH_RPC_URL serves chain {served}, but ETH_CHAIN_ID is {self.chain_id}; refusing "
                             "to sign transfers for another network (deposit addresses there are not ours)")
        self._chain_checked = True

    def balance(self, asset: str) -> int:
        if asset == ETH:
            return self.w3.eth.get_balance(self.address)
        return self.usdt.functions.balanceOf(self.address).call()

    def stored(self, payout_id: int) -> StoredTx | None:
        return self.records.of_payout(payout_id)

    def transfer_fee(self, asset: str, to: str, amount: int) -> int:
        """What the transfer would cost in gas now (wei, at today's base fee plus our tip)."""
        tx, _ = self._unsigned(asset, to, amount, nonce=0)
        return tx["gas"] * (fees.base_fee(self.w3) + self.priority_fee_wei)

    # ---- sending ---------------------------------------------------------------------------------

    def send(self, payout_id: int, purpose: str, asset: str, to: str, amount_base_units: int,
             on_stored: Callable[[Session], None]) -> StoredTx:
        """The payout's transfer, signed and stored if it was not yet, then broadcast.

        `on_stored(session)` runs in the same transaction that stores the signed bytes, so the
        payout's own state moves with it. Returns the stored transfer (broadcast, maybe mined)."""
        self.check_chain()
        with advisory_lock(self.engine, f"sender:{self.address.lower()}"):
            tx = self.stored(payout_id)
            if tx is None:
                self._rebroadcast_backlog()
                tx = self._sign_and_store(payout_id, purpose, asset, to, amount_base_units, on_stored)
                self.checkpoint("after_sign")
            self._broadcast(tx)
        return tx

    def _unsigned(self, asset: str, to: str, amount: int, nonce: int) -> tuple[dict, int]:
        """The transaction to sign, its gas estimated after the balances were found sufficient."""
        to = Web3.to_checksum_address(to)
        max_fee, tip = fees.fresh(self.w3, self.priority_fee_wei)
        # Before estimating: a token shortfall reverts estimation, and the ETH must at least cover
        # the value and a plain transfer's gas.
        self._require_funds(asset, amount, fees.PLAIN_TRANSFER_GAS * max_fee)
        tx: dict[str, Any] = {"chainId": self.chain_id, "from": self.address, "maxPriorityFeePerGas": tip,
                              "maxFeePerGas": max_fee}
        if asset == ETH:
            tx.update(to=to, value=amount)  # a contract wallet's fallback needs more than 21,000
        else:
            tx.update(to=self.usdt.address, value=0, data=self.usdt.encode_abi("transfer", [to, amount]))
        # Estimated without a nonce: any will do.
        tx["gas"] = fees.with_margin(self.w3.eth.estimate_gas(cast(TxParams, tx)))
        self._require_funds(asset, amount, tx["gas"] * max_fee)
        tx["nonce"] = nonce
        return tx, amount

    def _sign_and_store(self, payout_id: int, purpose: str, asset: str, to: str, amount: int,
                        on_stored: Callable[[Session], None]) -> StoredTx:
        nonce = self.records.next_nonce(self.w3.eth.get_transaction_count(self.address, "pending"))
        tx, _ = self._unsigned(asset, to, amount, nonce)
        signed = self._account.sign_transaction(tx)
        stored = self.records.store_signed(payout_id, purpose, asset, Web3.to_checksum_address(to), amount, nonce,
                                           signed, tx, on_stored)
        logger.info("payout %s: signed %s transfer %s (nonce %s, gas %s) of %s base units to %s", payout_id, asset,
                    stored.tx_hash, nonce, tx["gas"], amount, to)
        return stored

    def _require_funds(self, asset: str, amount: int, gas_cost: int) -> None:
        if asset == USDT and (usdt := self.balance(USDT)) < amount:
            raise InsufficientFunds(USDT, usdt, amount)
        eth_needed = gas_cost + (amount if asset == ETH else 0)
        eth = self.balance(ETH)
        if eth < eth_needed:
            raise InsufficientFunds(ETH, eth, eth_needed)

    def _rebroadcast_backlog(self) -> None:
        """Send stored transfers the chain has not counted yet, lowest nonce first."""
        count = self.w3.eth.get_transaction_count(self.address, "pending")
        backlog = self.records.unmined_from(count)
        for tx in backlog:
            # Another payout's transfer, maybe, sent while this one runs: its own id, not the context's.
            logger.info("re-broadcasting stored transfer %s (nonce %s) of payout %s", tx.tx_hash, tx.nonce,
                        tx.payout_id, extra={"payout_id": tx.payout_id})
            self._broadcast(tx)

    def _broadcast(self, tx: StoredTx, checkpoint: str = "after_broadcast") -> None:
        if tx.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED):
            return
        try:
            self.w3.eth.send_raw_transaction(tx.raw_tx)
        except Web3RPCError as error:
            message = str(error).lower()
            if any(text in message for text in _FEE_TOO_LOW) and not any(text in message for text in _ALREADY):
                logger.warning("payout %s: the node refused transfer %s for its fee (%s); it waits to be replaced",
                               tx.payout_id, tx.tx_hash, error, extra={"payout_id": tx.payout_id})
                return
            if not any(text in message for text in _ALREADY):
                raise
            if "nonce too low" in message and self._mined(tx) is None:
                # Our nonce is used and by none of the versions we signed: this transfer can never mine.
                self.records.set_status(tx, ChainTxStatus.FAILED)
                raise TransferRefused(f"transfer {tx.tx_hash}: nonce {tx.nonce} was used by another transaction")
        self.checkpoint(checkpoint)
        if tx.status == ChainTxStatus.SIGNED:
            self.records.set_status(tx, ChainTxStatus.BROADCAST)

    # ---- confirming ------------------------------------------------------------------------------

    def confirm(self, tx: StoredTx) -> ChainTxStatus:
        """CONFIRMED or FAILED once mined `confirmations` deep (and stored as such); BROADCAST before.

        Unmined for `replace_after` since its newest version was signed: replaced (fees raised)."""
        if tx.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED):
            return tx.status
        mined = self._mined(tx)
        if mined is None:
            with advisory_lock(self.engine, f"sender:{self.address.lower()}"):
                tx = self.stored(tx.payout_id)  # a replacement made meanwhile is the version to send
                if tx.status == ChainTxStatus.SIGNED:
                    # Never accepted by a node yet (a crash after signing, or its fee refused): send
                    # it first; only a version refused for its fee is replaced when it is due.
                    self._broadcast(tx)
                    if self.stored(tx.payout_id).status == ChainTxStatus.SIGNED:
                        self._replace_if_stuck(tx)
                elif not self._replace_if_stuck(tx):
                    # A node may drop what it never mined; the newest bytes again are always safe.
                    self._broadcast(tx)
            return ChainTxStatus.BROADCAST
        tx_hash, receipt = mined
        if self.w3.eth.block_number - receipt["blockNumber"] + 1 < self.confirmations:
            return ChainTxStatus.BROADCAST  # mined, not yet final: a reorg could still drop it
        self.checkpoint("before_receipt_stored")
        status = ChainTxStatus.CONFIRMED if receipt["status"] == 1 else ChainTxStatus.FAILED
        self.records.set_status(tx, status, block_number=receipt["blockNumber"], mined_hash=tx_hash)
        logger.info("payout %s: transfer %s %s in block %s", tx.payout_id, tx_hash, status.value,
                    receipt["blockNumber"], extra={"payout_id": tx.payout_id})
        return status

    def _mined(self, tx: StoredTx):
        """(hash, receipt) of whichever signed version of the transfer is mined, if one is."""
        for tx_hash in self.records.attempt_hashes(tx.id):
            receipt = self._receipt(tx_hash)
            if receipt is not None:
                return tx_hash, receipt
        return None

    def _replace_if_stuck(self, tx: StoredTx) -> bool:
        """Sign, store, then broadcast a same-nonce version with higher fees; False if not due.
        The caller holds the sender lock."""
        if tx.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED):
            return False
        signed_at = self.records.newest_signed_at(tx.id)
        if self.clock.now() - signed_at < self.replace_after:
            return False
        if self.w3.eth.get_transaction_count(self.address, "latest") > tx.nonce:
            return False  # the nonce is used: mined by one of ours (seen next look) or refused on broadcast
        body = fees.replacement(self.w3, tx.raw_tx, self.priority_fee_wei)
        self._require_funds(tx.asset, tx.amount_base_units, body["gas"] * body["maxFeePerGas"])
        signed = self._account.sign_transaction(body)
        replaced = self.records.store_replacement(tx.id, signed, body)
        if replaced is None:
            return False  # confirmed or failed meanwhile
        logger.warning("payout %s: transfer %s (nonce %s) unmined since %s; replaced by %s with maxFeePerGas %s, "
                       "maxPriorityFeePerGas %s", tx.payout_id, tx.tx_hash, tx.nonce, signed_at, replaced.tx_hash,
                       body["maxFeePerGas"], body["maxPriorityFeePerGas"], extra={"payout_id": tx.payout_id})
        self.checkpoint("after_replacement_signed")
        self._broadcast(replaced, "after_replacement_broadcast")
        return True

    def _receipt(self, tx_hash: str):
        try:
            return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound:
            return None
