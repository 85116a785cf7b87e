"""The host wallet's record of its transfers: `chain_transactions` (one per payout: the bytes to
broadcast, their hash, nonce and status) and `chain_tx_attempts` (every version ever signed, so
whichever one is mined can be found and counted).

Kept apart from `wallet` so that module reads as the order of operations against the chain (check
funds, sign, store, broadcast, confirm, replace) and this one as what is written down at each step.
Each method is its own transaction: a signed transfer is committed before it is broadcast, and a
transfer found final (confirmed or failed) is never changed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import ChainTransaction, ChainTxAttempt, ChainTxStatus

FINAL = (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED)


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


class TransferRecords:
    """The stored transfers sent from one address."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock, address: str):
        self.session_factory = session_factory
        self.clock = clock
        self.address = address

    def of_payout(self, payout_id: int) -> StoredTx | None:
        with self.session_factory() as session:
            row = session.scalar(select(ChainTransaction).where(ChainTransaction.payout_id == payout_id))
            return StoredTx.of(row) if row is not None else None

    def next_nonce(self, chain_pending: int) -> int:
        """The chain's pending count, or past the last nonce stored when the chain has not seen it yet."""
        with self.session_factory() as session:
            last = session.scalar(select(func.max(ChainTransaction.nonce))
                                  .where(ChainTransaction.from_address == self.address))
        return max(chain_pending, -1 if last is None else last + 1)

    def store_signed(self, payout_id: int, purpose: str, asset: str, to: str, amount: int, nonce: int,
                     signed: Any, body: dict, on_stored: Callable[[Session], None]) -> StoredTx:
        """Commit a freshly signed transfer and its first attempt; `on_stored` runs in the same transaction."""
        now = self.clock.now()
        row = ChainTransaction(payout_id=payout_id, purpose=purpose, asset=asset, from_address=self.address,
                               to_address=to, amount_base_units=amount, nonce=nonce,
                               raw_tx=bytes(signed.raw_transaction), tx_hash=signed.hash.to_0x_hex(),
                               status=ChainTxStatus.SIGNED, created_at=now, updated_at=now)
        with self.session_factory.begin() as session:
            session.add(row)
            session.flush()
            session.add(_attempt(row.id, signed, body, now))
            on_stored(session)
            return StoredTx.of(row)

    def unmined_from(self, nonce: int) -> list[StoredTx]:
        """Transfers signed or broadcast with this nonce or a later one, lowest nonce first."""
        with self.session_factory() as session:
            rows = session.scalars(select(ChainTransaction).where(
                ChainTransaction.from_address == self.address, ChainTransaction.nonce >= nonce,
                ChainTransaction.status.in_([ChainTxStatus.SIGNED, ChainTxStatus.BROADCAST]))
                .order_by(ChainTransaction.nonce))
            return [StoredTx.of(row) for row in rows]

    def attempt_hashes(self, chain_tx_id: int) -> list[str]:
        """Every version's hash, newest first."""
        with self.session_factory() as session:
            return list(session.scalars(select(ChainTxAttempt.tx_hash).where(
                ChainTxAttempt.chain_transaction_id == chain_tx_id).order_by(ChainTxAttempt.id.desc())))

    def newest_signed_at(self, chain_tx_id: int) -> datetime:
        with self.session_factory() as session:
            newest = session.scalars(select(ChainTxAttempt).where(ChainTxAttempt.chain_transaction_id == chain_tx_id)
                                     .order_by(ChainTxAttempt.id.desc()).limit(1)).one()
            return newest.created_at

    def store_replacement(self, chain_tx_id: int, signed: Any, body: dict) -> StoredTx | None:
        """Make a same-nonce version the one to broadcast (kept as an attempt); None if the transfer
        became final meanwhile."""
        with self.session_factory.begin() as session:
            row = session.get(ChainTransaction, chain_tx_id, with_for_update=True)
            if row.status in FINAL:
                return None
            row.raw_tx, row.tx_hash, row.updated_at = bytes(signed.raw_transaction), signed.hash.to_0x_hex(), \
                self.clock.now()
            session.add(_attempt(chain_tx_id, signed, body, self.clock.now()))
            return StoredTx.of(row)

    def set_status(self, tx: StoredTx, status: ChainTxStatus, block_number: int | None = None,
                   mined_hash: str | None = None) -> None:
        with self.session_factory.begin() as session:
            row = session.get(ChainTransaction, tx.id, with_for_update=True)
            if row.status in FINAL:
                return
            row.status, row.updated_at = status, self.clock.now()
            if block_number is not None:
                row.block_number = block_number
            if mined_hash is not None and mined_hash != row.tx_hash:
                # An earlier version was the one mined: it is the transfer now.
                mined = session.scalar(select(ChainTxAttempt).where(ChainTxAttempt.tx_hash == mined_hash))
                row.tx_hash, row.raw_tx = mined.tx_hash, mined.raw_tx


def _attempt(chain_tx_id: int, signed: Any, body: dict, now: datetime) -> ChainTxAttempt:
    """The record of one signed version of a transfer."""
    return ChainTxAttempt(chain_transaction_id=chain_tx_id, tx_hash=signed.hash.to_0x_hex(),
                          raw_tx=bytes(signed.raw_transaction), max_fee_per_gas=Decimal(body["maxFeePerGas"]),
                          max_priority_fee_per_gas=Decimal(body["maxPriorityFeePerGas"]), gas=int(body["gas"]),
                          created_at=now)
