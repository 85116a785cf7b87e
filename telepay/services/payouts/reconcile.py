"""`telepay payouts reconcile`: after a database restore, every payout in flight compared with the
chain and ChangeNOW, and (`apply`) put into its true state before payout work resumes.

A restored database is behind the world: what the host wallet signed, broadcast or saw mined
after the backup, and the exchanges ChangeNOW created or finished since, are missing from it.
Left alone, the runner would act on the old records: a payout recorded `pending` whose transfer
was in fact mined would be sent a second time. So, per payout not yet settled:

* the chain: the receipts of every version of its recorded transfer; whether that transfer's
  nonce was used by another transaction (a replacement the records lost); and the wallet's
  nonces the records do not hold (`chainlook`): a transfer made after the backup. Such a lost
  transfer is claimed by the one payout whose destination it paid (the owner's address for a
  direct payout, else the pay-in address of its exchange, looked up as the runner does, or
  backwards from the pay-in address paid), if its amount is the payout's too (`destinations`);
* ChangeNOW: its exchange by id, or for a payout whose exchange was not recorded, the exchanges
  created since its intent that carry its tag or pay its address.

What apply does never moves money: it records what happened (a lost transfer is stored, with
its verified signed bytes, as the payout's transfer), then lets the runner take the steps that
only read the world (a mined transfer confirmed, a finished exchange recorded). A transfer
signed but never seen by the chain, its nonce still unused, is left to the runner, which
re-broadcasts those same bytes when payouts resume; nothing is ever signed here. Anything
ambiguous goes to `needs_review` with the reason. Run twice, the second run finds nothing to do.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.models import ChainTransaction, ChainTxAttempt, Payout, PayoutStatus
from telepay.services.jobs import JobQueue
from telepay.services.payouts import review
from telepay.services.payouts.allocation import enqueue_payout
from telepay.services.payouts.chainlook import ChainLook, SeenTransfer
from telepay.services.payouts import destinations as where
from telepay.services.payouts.exchanges import same_address
from telepay.services.payouts.reconcile_fix import Fixes
from telepay.services.payouts.runner import PayoutRunner, is_direct
from telepay.services.payouts.transfers import StoredTx

logger = logging.getLogger(__name__)

SETTLED = (PayoutStatus.FINISHED, PayoutStatus.CANCELLED, PayoutStatus.MERGED)
# An exchange in one of these has received a deposit: someone funded it.
DEPOSITED = frozenset({"confirming", "exchanging", "sending", "finished", "verifying", "refunded"})
# Lost nonces looked up in one run (each costs about log2(blocks) calls); older ones are named.
MAX_LOOKUPS = 50


class Verdict(enum.StrEnum):
    CONSISTENT = "consistent"    # the records are the truth (or the runner gets there on its own)
    FIX = "fix"                  # apply records what happened
    REVIEW = "review"            # ambiguous: apply sends the payout to needs_review with the reason
    ATTENTION = "attention"      # nothing reconcile may do: an operator decides


@dataclass
class Finding:
    payout_id: int | None        # None: about the wallet (a transfer no payout explains)
    recorded: str
    world: str
    truth: str
    verdict: Verdict
    fix: Callable[[], str] | None = field(default=None, repr=False)


class PayoutReconciler:
    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, runner: PayoutRunner, clock: Clock,
                 *, from_nonce: int | None = None):
        self.session_factory = session_factory
        self.jobs = jobs
        self.runner = runner
        self.wallet = runner.wallet
        self.exchanges = runner.exchanges
        self.look = ChainLook(runner.wallet)
        self.clock = clock
        self.from_nonce = from_nonce

    def apply(self, findings: list[Finding]) -> list[str]:
        """Run each finding's fix; what each did (a fix that fails says so and the others still run)."""
        done = []
        for finding in findings:
            if finding.fix is None:
                continue
            try:
                done.append(finding.fix())
            except Exception as error:  # noqa: BLE001 - reported; the payout stays as it was
                logger.exception("reconcile: fixing payout %s failed", finding.payout_id)
                done.append(f"payout {finding.payout_id}: FAILED {type(error).__name__}: {error}")
        return done

    # ---- looking -----------------------------------------------------------------------------------

    def survey(self) -> list[Finding]:
        """What the records say, what the world says, and the true state, per payout in flight."""
        with self.session_factory() as session:
            payouts = list(session.scalars(select(Payout).where(Payout.status.not_in(SETTLED)).order_by(Payout.id)))
            session.expunge_all()
        stored = {p.id: self.wallet.stored(p.id) for p in payouts}
        latest, pending = self.look.nonces()
        findings: list[Finding] = []
        lost = self._lost_transfers(latest, pending, findings)
        open_ = [p for p in payouts if stored[p.id] is None and p.status in (
            PayoutStatus.PENDING, PayoutStatus.EXCHANGE_REQUESTED, PayoutStatus.EXCHANGE_CREATED)]
        destinations: dict[int, list[where.Destination]] = {}
        unread: dict[int, str] = {}
        for p in open_:
            try:
                destinations[p.id] = where.destinations(p, self.exchanges)
            except Exception as error:  # noqa: BLE001 - ChangeNOW down: this payout cannot be judged now
                unread[p.id] = f"cannot read its exchange: {type(error).__name__}: {error}"
        claimed: dict[int, list[SeenTransfer]] = {}
        for t in lost:
            owners = [pid for pid, dests in destinations.items()
                      if any(d.asset == t.asset and same_address(d.address, t.to_address) for d in dests)]
            if not owners and t.asset is not None:
                owners = self._by_paid_exchange(t, [p for p in open_ if p.id in destinations], destinations)
            if not owners:
                findings.append(self._unclaimed(t))
            for pid in owners:  # several: each is judged ambiguous (and parked) below
                claimed.setdefault(pid, []).append(t if len(owners) == 1 else _contested(t, owners))
        for p in payouts:
            try:
                if p.id in unread:
                    raise LookupError(unread[p.id])
                findings.append(self._judge(p, stored[p.id], claimed.get(p.id, []), destinations.get(p.id, []),
                                            latest))
            except Exception as error:  # noqa: BLE001 - one payout unreadable: the others are still judged
                findings.append(Finding(p.id, p.status.value, f"{type(error).__name__}: {error}",
                                        "unknown: run reconcile again", Verdict.ATTENTION))
        return findings

    def _lost_transfers(self, latest: int, pending: int, findings: list[Finding]) -> list[SeenTransfer]:
        """The wallet's mined transactions since the newest recorded one that the records lack."""
        with self.session_factory() as session:
            ours = func.lower(ChainTransaction.from_address) == self.wallet.address.lower()
            nonces = set(session.scalars(select(ChainTransaction.nonce).where(ours)))
            low_block = session.scalar(select(func.max(ChainTransaction.block_number)).where(ours)) or 0
        start = self.from_nonce if self.from_nonce is not None else (max(nonces) + 1 if nonces else 0)
        missing = [n for n in range(start, latest) if n not in nonces]
        if len(missing) > MAX_LOOKUPS:
            skipped, missing = missing[:-MAX_LOOKUPS], missing[-MAX_LOOKUPS:]
            findings.append(Finding(None, f"no record of nonces {skipped[0]}..{skipped[-1]}",
                                    f"the host wallet used {len(skipped)} of them", "unknown", Verdict.ATTENTION))
        lost = []
        for n in missing:
            try:
                lost.append(self.look.by_nonce(n, low_block))
            except Exception as error:  # noqa: BLE001 - an RPC without past state: say so, go on
                findings.append(Finding(None, f"no record of nonce {n}", f"cannot read it: {error}", "unknown",
                                        Verdict.ATTENTION))
        pooled = [n for n in range(latest, pending) if n not in nonces]
        if pooled:
            findings.append(Finding(None, f"no record of nonces {pooled}", "they wait unmined in the node's pool",
                                    "unknown until mined: run reconcile again then", Verdict.ATTENTION))
        return lost

    def _by_paid_exchange(self, t: SeenTransfer, payouts: list[Payout],
                          destinations: dict[int, list[where.Destination]]) -> list[int]:
        """Payouts the exchange a lost transfer funded pays, that exchange added to their destinations."""
        payouts = [p for p in payouts if not p.exchange_id and not is_direct(p)]
        if not payouts:
            return []
        paid = where.paid_exchange(self.exchanges, t.to_address, t.asset or "", t.mined_at)
        if paid is None:
            return []
        owners = [p.id for p in payouts if where.pays(paid, p)]
        for pid in owners:
            destinations[pid].append(paid.destination)
        return owners

    def _unclaimed(self, t: SeenTransfer) -> Finding:
        with self.session_factory() as session:
            to = t.to_address.lower()
            same = list(session.scalars(select(Payout.id).where(
                or_(func.lower(Payout.to_address) == to, func.lower(Payout.payin_address) == to))))
        hint = f" (payouts {sorted(same)} have that destination)" if same else ""
        return Finding(None, "no payout in flight paid there" + hint, t.describe(), "a transfer the records lost: "
                       "its payment may be re-learned and paid again; check before resuming payouts",
                       Verdict.ATTENTION)

    # ---- judging -----------------------------------------------------------------------------------

    def _judge(self, p: Payout, tx: StoredTx | None, claimed: list[SeenTransfer], dests: list[where.Destination],
               latest: int) -> Finding:
        fixes = Fixes(self)
        recorded = p.status.value + (f" (transfer {tx.tx_hash}, nonce {tx.nonce}, {tx.status.value})" if tx else "")
        if p.status == PayoutStatus.NEEDS_REVIEW:
            return Finding(p.id, f"needs_review: {p.last_error or ''}"[:200], "not compared", "an operator's call "
                           f"(`telepay payouts show {p.id}` / `retry`)", Verdict.ATTENTION)
        if p.status == PayoutStatus.CARRIED_OVER:
            return Finding(p.id, recorded, "nothing to look at: nothing is sent before more shares come",
                           "carried_over", Verdict.CONSISTENT)
        if len(claimed) > 1 or any(t.contested for t in claimed):
            why = "cannot tell whose these lost transfers are: " + "; ".join(t.describe() for t in claimed)
            return Finding(p.id, recorded, why, "needs_review (ambiguous)", Verdict.REVIEW, fixes.park(p, why))
        if claimed:
            return self._lost(p, recorded, claimed[0], dests, fixes)
        if tx is not None:
            return self._recorded_transfer(p, recorded, tx, latest, fixes)
        deposited = [d for d in dests if d.exchange_status in DEPOSITED]
        if deposited:
            why = (f"ChangeNOW exchange {deposited[0].exchange_id} is {deposited[0].exchange_status}: a deposit "
                   "reached it that no transfer of the host wallet explains")
            return Finding(p.id, recorded, why, "needs_review (ambiguous)", Verdict.REVIEW, fixes.park(p, why))
        world = "; ".join(f"exchange {d.exchange_id} {d.exchange_status}" for d in dests if d.exchange_id) or \
            "no transfer from the host wallet to its destination"
        return Finding(p.id, recorded, world, p.status.value, Verdict.CONSISTENT)

    def _lost(self, p: Payout, recorded: str, t: SeenTransfer, dests: list[where.Destination], fixes: Fixes) -> Finding:
        dest = next(d for d in dests if same_address(d.address, t.to_address))
        world = "sent " + t.describe() + (f"; exchange {dest.exchange_id} {dest.exchange_status}"
                                          if dest.exchange_id else "")
        if t.raw_tx is None:
            why = f"transfer {t.tx_hash} paid it, but the node gives no signed bytes to record"
            return Finding(p.id, recorded, world, f"needs_review: {why}", Verdict.REVIEW, fixes.park(p, why))
        if doubt := where.amount_doubt(p, t.amount_base_units, self.exchanges):
            why = f"transfer {t.tx_hash} paid its destination, but {doubt}"
            return Finding(p.id, recorded, world, f"needs_review: {why}", Verdict.REVIEW, fixes.park(p, why))
        if t.succeeded is False:
            truth = "needs_review (the transfer reverted)"
        elif is_direct(p):
            truth = "finished"
        else:
            truth = "finished" if dest.exchange_status == "finished" else "funded"
        return Finding(p.id, recorded, world, truth, Verdict.FIX, fixes.adopt(p, t, dest))

    def _recorded_transfer(self, p: Payout, recorded: str, tx: StoredTx, latest: int, fixes: Fixes) -> Finding:
        mined = self.mined(tx)
        if mined is not None:
            tx_hash, receipt = mined
            if not self.look.final(receipt):
                return Finding(p.id, recorded, f"{tx_hash} mined in block {receipt['blockNumber']}, not yet final",
                               p.status.value, Verdict.CONSISTENT)
            if receipt["status"] != 1:
                return Finding(p.id, recorded, f"{tx_hash} reverted in block {receipt['blockNumber']}",
                               "needs_review", Verdict.FIX, fixes.advance(p))
            return self._mined_transfer(p, recorded, tx_hash, receipt, fixes)
        if tx.nonce < latest:
            other = self.look.by_nonce(tx.nonce)
            if other.asset == tx.asset and same_address(other.to_address, tx.to_address) and \
                    other.amount_base_units == tx.amount_base_units and other.raw_tx is not None:
                world = f"a version the records lost was mined: {other.describe()}"
                return Finding(p.id, recorded, world, "funded or finished", Verdict.FIX, fixes.adopt_version(p, other))
            why = f"its nonce {tx.nonce} was used by another transaction: {other.describe()}"
            return Finding(p.id, recorded, why, "needs_review (ambiguous)", Verdict.REVIEW, fixes.park(p, why))
        if any(self.look.in_pool(h) for h in self._hashes(tx)):
            return Finding(p.id, recorded, "waiting in the node's pool", p.status.value, Verdict.CONSISTENT)
        return Finding(p.id, recorded, f"never seen by the chain; nonce {tx.nonce} unused", f"{p.status.value}: "
                       "the runner re-broadcasts these same bytes when payouts resume", Verdict.CONSISTENT)

    def _mined_transfer(self, p: Payout, recorded: str, tx_hash: str, receipt, fixes: Fixes) -> Finding:
        world = f"{tx_hash} mined in block {receipt['blockNumber']}"
        if is_direct(p):
            return Finding(p.id, recorded, world, "finished", Verdict.FIX, fixes.advance(p))
        state = self.exchanges.status(p.exchange_id or "")
        world += f"; exchange {p.exchange_id} {state.status}"
        if state.status == "finished" or state.terminal:
            truth = "finished" if state.status == "finished" else f"needs_review (exchange {state.status})"
            return Finding(p.id, recorded, world, truth, Verdict.FIX, fixes.advance(p))
        if p.status == PayoutStatus.FUNDED:
            return Finding(p.id, recorded, world, "funded", Verdict.CONSISTENT)
        return Finding(p.id, recorded, world, "funded", Verdict.FIX, fixes.advance(p))

    def _hashes(self, tx: StoredTx) -> list[str]:
        with self.session_factory() as session:
            return list(session.scalars(select(ChainTxAttempt.tx_hash).where(
                ChainTxAttempt.chain_transaction_id == tx.id).order_by(ChainTxAttempt.id.desc()))) or [tx.tx_hash]

    def mined(self, tx: StoredTx) -> tuple[str, Any] | None:
        """(hash, receipt) of whichever recorded version of the transfer is mined, if one is."""
        for tx_hash in self._hashes(tx):
            if (receipt := self.look.receipt(tx_hash)) is not None:
                return tx_hash, receipt
        return None

    # ---- the fixes' shared steps -----------------------------------------------------------------------

    def review(self, payout_id: int, reason: str) -> PayoutStatus:
        return review.park(self.session_factory, self.jobs, self.clock.now(), payout_id, f"reconcile: {reason}")

    def queue(self, session: Session, payout_id: int, why: str) -> None:
        enqueue_payout(session, self.jobs, payout_id, f"reconcile:{why}")


def _contested(t: SeenTransfer, owners: list[int]) -> SeenTransfer:
    return replace(t, contested=tuple(owners))
