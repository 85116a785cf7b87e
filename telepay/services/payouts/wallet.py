"""The host wallet: ETH and USDT (ERC-20) transfers signed locally, each sent exactly once.

Exactly once, whatever crashes: a transfer is signed, then stored (raw bytes, hash, nonce) in its
own committed transaction, and only then broadcast. Every later attempt for the same payout finds
the stored row and re-broadcasts the *same bytes* or finds the receipt; it never signs again
(`chain_transactions.payout_id` is unique, so the database refuses a second one too).

One sender per host address: nonces are chosen, transactions signed and broadcast under a
PostgreSQL advisory lock named after the address, so several workers or processes never race
for a nonce. Before signing a new transfer, the sender first re-broadcasts any stored transfer
the chain has not seen yet, so a crash after signing never leaves a nonce gap behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from eth_account import Account
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError

from telepay.clock import Clock
from telepay.models import ChainTransaction, ChainTxStatus
from telepay.services.payouts.locks import advisory_lock

logger = logging.getLogger(__name__)

ETH, USDT = "ETH", "USDT"
_ERC20_ABI = [
    {"name": "transfer", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": []},  # Tether's transfer returns nothing; asking for a bool would fail to decode
    {"name": "balanceOf", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "who", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
]
_ETH_GAS = 21_000
# Messages a node gives for a transaction it already has or has already mined.
_ALREADY = ("already known", "known transaction", "nonce too low", "already imported")

Checkpoint = Callable[[str], None]


class InsufficientFunds(Exception):
    """The host wallet cannot cover a transfer and its gas; operators must top it up."""

    def __init__(self, asset: str, have: int, need: int):
        super().__init__(f"host wallet has {have} {asset} base units, needs {need}")
        self.asset, self.have, self.need = asset, have, need


class TransferRefused(Exception):
    """The stored transaction can never be mined (its nonce went to another) or it reverted."""


@dataclass(frozen=True)
class StoredTx:
    id: int
    payout_id: int
    asset: str
    to_address: str
    amount_base_units: int
    nonce: int
    tx_hash: str
    raw_tx: bytes
    status: ChainTxStatus

    @classmethod
    def of(cls, row: ChainTransaction) -> StoredTx:
        return cls(row.id, row.payout_id, row.asset, row.to_address, int(row.amount_base_units), row.nonce,
                   row.tx_hash, bytes(row.raw_tx), row.status)


class HostWallet:
    def __init__(self, w3: Web3, private_key: str, usdt_address: str, session_factory: sessionmaker[Session],
                 clock: Clock, *, priority_fee_wei: int = 10**9, checkpoint: Checkpoint | None = None):
        self.w3 = w3
        self._account = Account.from_key(private_key)
        self.address: str = self._account.address
        self.usdt = w3.eth.contract(address=Web3.to_checksum_address(usdt_address), abi=_ERC20_ABI)
        self.session_factory = session_factory
        self.engine: Engine = session_factory.kw["bind"]
        self.clock = clock
        self.priority_fee_wei = priority_fee_wei
        self.checkpoint = checkpoint or (lambda name: None)

    def __repr__(self) -> str:  # the key must never show up in a log or a traceback
        return f"HostWallet({self.address})"

    # ---- reading ---------------------------------------------------------------------------------

    def balance(self, asset: str) -> int:
        if asset == ETH:
            return self.w3.eth.get_balance(self.address)
        return self.usdt.functions.balanceOf(self.address).call()

    def stored(self, payout_id: int) -> StoredTx | None:
        with self.session_factory() as session:
            row = session.scalar(select(ChainTransaction).where(ChainTransaction.payout_id == payout_id))
            return StoredTx.of(row) if row is not None else None

    # ---- sending ---------------------------------------------------------------------------------

    def send(self, payout_id: int, purpose: str, asset: str, to: str, amount_base_units: int,
             on_stored: Callable[[Session], None]) -> StoredTx:
        """The payout's transfer, signed and stored if it was not yet, then broadcast.

        `on_stored(session)` runs in the same transaction that stores the signed bytes, so the
        payout's own state moves with it. Returns the stored transfer (broadcast, maybe mined)."""
        with advisory_lock(self.engine, f"sender:{self.address.lower()}"):
            tx = self.stored(payout_id)
            if tx is None:
                self._rebroadcast_backlog()
                tx = self._sign_and_store(payout_id, purpose, asset, to, amount_base_units, on_stored)
                self.checkpoint("after_sign")
            self._broadcast(tx)
        return tx

    def _sign_and_store(self, payout_id: int, purpose: str, asset: str, to: str, amount: int,
                        on_stored: Callable[[Session], None]) -> StoredTx:
        to = Web3.to_checksum_address(to)
        with self.session_factory() as session:
            last = session.scalar(select(func.max(ChainTransaction.nonce))
                                  .where(ChainTransaction.from_address == self.address))
        nonce = max(self.w3.eth.get_transaction_count(self.address, "pending"), -1 if last is None else last + 1)
        base_fee = self.w3.eth.get_block("latest")["baseFeePerGas"]
        tx = {"chainId": self.w3.eth.chain_id, "from": self.address, "nonce": nonce,
              "maxPriorityFeePerGas": self.priority_fee_wei, "maxFeePerGas": 2 * base_fee + self.priority_fee_wei}
        if asset == ETH:
            tx.update(to=to, value=amount, gas=_ETH_GAS)
        else:
            tx.update(to=self.usdt.address, value=0, data=self.usdt.encode_abi("transfer", [to, amount]))
            tx["gas"] = self.w3.eth.estimate_gas(tx) * 3 // 2
        self._require_funds(asset, amount, tx["gas"] * tx["maxFeePerGas"])
        signed = self._account.sign_transaction(tx)
        row = ChainTransaction(payout_id=payout_id, purpose=purpose, asset=asset, from_address=self.address,
                               to_address=to, amount_base_units=amount, nonce=nonce,
                               raw_tx=bytes(signed.raw_transaction), tx_hash=signed.hash.to_0x_hex(),
                               status=ChainTxStatus.SIGNED, created_at=self.clock.now(), updated_at=self.clock.now())
        with self.session_factory.begin() as session:
            session.add(row)
            session.flush()
            on_stored(session)
            stored = StoredTx.of(row)
        logger.info("payout %s: signed %s transfer %s (nonce %s) of %s base units to %s", payout_id, asset,
                    stored.tx_hash, nonce, amount, to)
        return stored

    def _require_funds(self, asset: str, amount: int, gas_cost: int) -> None:
        eth_needed = gas_cost + (amount if asset == ETH else 0)
        eth = self.balance(ETH)
        if eth < eth_needed:
            raise InsufficientFunds(ETH, eth, eth_needed)
        if asset == USDT and (usdt := self.balance(USDT)) < amount:
            raise InsufficientFunds(USDT, usdt, amount)

    def _rebroadcast_backlog(self) -> None:
        """Send stored transfers the chain has not counted yet, lowest nonce first."""
        count = self.w3.eth.get_transaction_count(self.address, "pending")
        with self.session_factory() as session:
            rows = session.scalars(select(ChainTransaction).where(
                ChainTransaction.from_address == self.address, ChainTransaction.nonce >= count,
                ChainTransaction.status.in_([ChainTxStatus.SIGNED, ChainTxStatus.BROADCAST]))
                .order_by(ChainTransaction.nonce))
            backlog = [StoredTx.of(row) for row in rows]
        for tx in backlog:
            logger.info("re-broadcasting stored transfer %s (nonce %s) of payout %s", tx.tx_hash, tx.nonce,
                        tx.payout_id)
            self._broadcast(tx)

    def _broadcast(self, tx: StoredTx) -> None:
        if tx.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED):
            return
        try:
            self.w3.eth.send_raw_transaction(tx.raw_tx)
        except Web3RPCError as error:
            message = str(error).lower()
            if not any(text in message for text in _ALREADY):
                raise
            if "nonce too low" in message and self._receipt(tx.tx_hash) is None:
                # Our nonce is used and it was not by these bytes: this transfer can never mine.
                self._set_status(tx, ChainTxStatus.FAILED)
                raise TransferRefused(f"transfer {tx.tx_hash}: nonce {tx.nonce} was used by another transaction")
        self.checkpoint("after_broadcast")
        if tx.status == ChainTxStatus.SIGNED:
            self._set_status(tx, ChainTxStatus.BROADCAST)

    # ---- confirming ------------------------------------------------------------------------------

    def confirm(self, tx: StoredTx) -> ChainTxStatus:
        """CONFIRMED or FAILED once mined (and stored as such); BROADCAST while it is not."""
        if tx.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED):
            return tx.status
        receipt = self._receipt(tx.tx_hash)
        if receipt is None:
            # A node may drop what it never mined; the same bytes again are always safe.
            with advisory_lock(self.engine, f"sender:{self.address.lower()}"):
                self._broadcast(tx)
            return ChainTxStatus.BROADCAST
        self.checkpoint("before_receipt_stored")
        status = ChainTxStatus.CONFIRMED if receipt["status"] == 1 else ChainTxStatus.FAILED
        self._set_status(tx, status, block_number=receipt["blockNumber"])
        logger.info("payout %s: transfer %s %s in block %s", tx.payout_id, tx.tx_hash, status.value,
                    receipt["blockNumber"])
        return status

    def _receipt(self, tx_hash: str):
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def _set_status(self, tx: StoredTx, status: ChainTxStatus, block_number: int | None = None) -> None:
        with self.session_factory.begin() as session:
            row = session.get(ChainTransaction, tx.id, with_for_update=True)
            if row.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED):
                return
            row.status, row.updated_at = status, self.clock.now()
            if block_number is not None:
                row.block_number = block_number
