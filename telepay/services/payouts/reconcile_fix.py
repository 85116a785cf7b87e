"""What `payouts reconcile --apply` does to a payout: record what the world shows, never send.

Each fix is made when the survey is judged and run later by `apply`; each checks again, under
the payout's row lock, that the payout is still where the survey found it, and does nothing
otherwise (so a second run, or a worker that moved meanwhile, changes nothing). The runner is
only asked to advance a payout whose next steps read the world and write records: a `funding`
payout whose transfer is mined (confirmed, then funded or finished) or a `funded` one (its
exchange followed). Those are the runner's own steps, so a payout ends exactly as it would have
had the database never gone back.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Callable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import ChainTransaction, ChainTxAttempt, ChainTxStatus, Payout, PayoutStatus
from telepay.services.payouts.chainlook import SeenTransfer
from telepay.services.payouts.destinations import Destination
from telepay.services.payouts.exchanges import FUNDING
from telepay.services.payouts.runner import PayoutRunner, is_direct
from telepay.services.payouts.transfers import StoredTx
from telepay.services.payouts.wallet import HostWallet

logger = logging.getLogger(__name__)

Fix = Callable[[], str]


class Reconciler(Protocol):
    """What the fixes use of `reconcile.PayoutReconciler`."""

    session_factory: sessionmaker[Session]
    runner: PayoutRunner
    wallet: HostWallet
    clock: Clock

    def review(self, payout_id: int, reason: str) -> PayoutStatus: ...

    def queue(self, session: Session, payout_id: int, why: str) -> None: ...

    def mined(self, tx: StoredTx) -> tuple[str, Any] | None: ...


class Fixes:
    def __init__(self, reconciler: Reconciler):
        self.r = reconciler

    def park(self, p: Payout, why: str) -> Fix:
        def fix() -> str:
            return f"payout {p.id}: {p.status.value} -> {self.r.review(p.id, why).value}"
        return fix

    def advance(self, p: Payout) -> Fix:
        """Let the runner take its reading steps (only for a mined transfer or a funded payout)."""
        def fix() -> str:
            return self._advance(p.id, p.status)
        return fix

    def adopt(self, p: Payout, t: SeenTransfer, dest: Destination) -> Fix:
        """Record a mined transfer the records lost as the payout's transfer."""
        def fix() -> str:
            now = self.r.clock.now()
            amount = Decimal(t.amount_base_units).scaleb(-FUNDING[p.funding_asset][3])
            with self.r.session_factory.begin() as session:
                row = session.get(Payout, p.id, with_for_update=True)
                taken = session.scalar(select(ChainTransaction.id).where(ChainTransaction.payout_id == p.id))
                if row is None or row.status != p.status or taken is not None:
                    return f"payout {p.id}: moved on since the survey; left alone"
                chain = ChainTransaction(
                    payout_id=p.id, purpose=p.kind.value, asset=t.asset, from_address=self.r.wallet.address,
                    to_address=t.to_address, amount_base_units=t.amount_base_units, nonce=t.nonce, raw_tx=t.raw_tx,
                    tx_hash=t.tx_hash, status=ChainTxStatus.BROADCAST, created_at=now, updated_at=now)
                session.add(chain)
                session.flush()
                session.add(self._attempt(chain.id, t, now))
                row.status, row.from_amount, row.failing_since, row.updated_at = PayoutStatus.FUNDING, amount, None, now
                if is_direct(p):
                    row.to_amount = amount
                elif dest.exchange_id and not row.exchange_id:
                    row.exchange_id, row.payin_address = dest.exchange_id, dest.address
                    row.to_amount = dest.expected_to or row.to_amount
                row.last_error = (f"reconcile: transfer {t.tx_hash} (nonce {t.nonce}) was found on the chain, "
                                  "missing from the restored records")
                self.r.queue(session, p.id, t.tx_hash)
            logger.warning("payout %s: recorded transfer %s (nonce %s) found on the chain after a restore", p.id,
                           t.tx_hash, t.nonce)
            done = f"payout {p.id}: {p.status.value} -> funding (transfer {t.tx_hash} recorded); "
            return done + self._advance(p.id, PayoutStatus.FUNDING)
        return fix

    def adopt_version(self, p: Payout, t: SeenTransfer) -> Fix:
        """A version of the recorded transfer (same nonce, recipient, amount) that the records lost."""
        def fix() -> str:
            now = self.r.clock.now()
            with self.r.session_factory.begin() as session:
                chain = session.scalar(select(ChainTransaction).where(ChainTransaction.payout_id == p.id)
                                       .with_for_update())
                if chain is None or chain.status in (ChainTxStatus.CONFIRMED, ChainTxStatus.FAILED) or \
                        chain.nonce != t.nonce:
                    return f"payout {p.id}: its transfer moved on since the survey; left alone"
                known = session.scalar(select(ChainTxAttempt.id).where(ChainTxAttempt.tx_hash == t.tx_hash))
                if known is None:
                    session.add(self._attempt(chain.id, t, now))
                chain.raw_tx, chain.tx_hash, chain.updated_at = t.raw_tx, t.tx_hash, now
            return f"payout {p.id}: recorded the mined version {t.tx_hash}; " + self._advance(p.id, p.status)
        return fix

    def _advance(self, payout_id: int, expected: PayoutStatus) -> str:
        with self.r.session_factory() as session:
            current = session.scalar(select(Payout.status).where(Payout.id == payout_id))
        if current != expected:
            return f"payout {payout_id}: now {current}, not {expected.value}; left alone"
        if current == PayoutStatus.FUNDING:
            tx = self.r.wallet.stored(payout_id)
            if tx is None or self.r.mined(tx) is None:
                return f"payout {payout_id}: its transfer is not mined; left to the runner"
        elif current != PayoutStatus.FUNDED:
            return f"payout {payout_id}: {current.value} is not advanced by reconcile"
        status = self.r.runner.run(payout_id)
        return f"payout {payout_id}: {expected.value} -> {status.value if status else 'held by a running worker'}"

    @staticmethod
    def _attempt(chain_id: int, t: SeenTransfer, now) -> ChainTxAttempt:
        return ChainTxAttempt(chain_transaction_id=chain_id, tx_hash=t.tx_hash, raw_tx=t.raw_tx,
                              max_fee_per_gas=Decimal(t.max_fee_per_gas),
                              max_priority_fee_per_gas=Decimal(t.max_priority_fee_per_gas), gas=t.gas, created_at=now)
