"""The `payout.run` job: moves one payout along, one durable step at a time.

    pending --quote--> exchange_requested --create--> exchange_created --sign+store--> funding
        --mined--> funded --exchange finished--> finished
    pending --sign+store--> funding --mined--> finished          (same asset as the owner's: direct)

A payout that waits (for its transfer to be mined, for ChangeNOW to pay out) asks for its own
job to run again after POLL seconds (`RunAgain`): one job row per payout run, however long the
wait.

Every step records its outcome with a compare-and-set on the status before the next one starts,
so a run cut short anywhere resumes from the last recorded step:

* the intent to create an exchange (with its rateId) is recorded before ChangeNOW is called,
  and a payout found in `exchange_requested` first looks its exchange up by the payout's tag,
  so an exchange created but not recorded is found again, never created twice;
* the funding transfer is signed and stored together with the move to `funding` (see
  `wallet`), so no second transfer is ever made; `funding` only re-broadcasts it, replaces it
  with higher fees when it is stuck (same nonce: at most one version can be mined), and reads
  receipts until it is `ETH_CONFIRMATIONS` deep.

A direct ETH payout worth less than `eth_min_fee_multiple` times its own gas is carried over,
like a share below ChangeNOW's minimum, until later shares make it worth sending.

One run per payout at a time (an advisory lock); a second worker on the same payout leaves it
to the first. Failures (ChangeNOW down, chain unreachable, host wallet short) raise, and the
queue retries with backoff; a payout still failing 24 h after its first failure goes to
`needs_review` and the operators get a DM. A refusal that retrying cannot fix (a 4xx, a
reverted or displaced transfer, a failed exchange) goes to `needs_review` at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from decimal import Decimal
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from telepay.clients.changenow import ProviderError
from telepay.clock import Clock
from telepay.logs import log_context
from telepay.models import Accumulation, ChainTxStatus, Payout, PayoutKind, PayoutStatus
from telepay.services.jobs import rows_touched, ClaimedJob, JobQueue, RetryPolicy, RunAgain
from telepay.services.messages import alert_operators
from telepay.services.delivery import payout_hold
from telepay.services.payouts.exchanges import FUNDING, BelowMinimum, PayoutExchanges, base_units, user_id
from telepay.services.payouts.locks import advisory_lock
from telepay.services.payouts import review
from telepay.services.payouts.wallet import ETH, USDT, HostWallet, TransferRefused

logger = logging.getLogger(__name__)

_WAIT = "wait"
# The queue retries a failing step with backoff; the runner itself decides when a payout has
# failed long enough (24 h) to go to review, so the queue's own give-up lies well beyond that.
PAYOUT_RETRY = RetryPolicy(interval=timedelta(seconds=30), backoff=2.0, max_interval=timedelta(minutes=30),
                           give_up_after=timedelta(days=7))


class PayoutFailed(Exception):
    """A step failed in a way retrying may fix; the job queue retries with backoff."""


class NeedsReview(Exception):
    """A step failed in a way retrying cannot fix."""


def is_direct(payout: Payout) -> bool:
    """The owner takes what the host pays with, on its network: a plain transfer, no exchange."""
    currency, network = FUNDING[payout.funding_asset][:2]
    return payout.kind != PayoutKind.SWEEP and (payout.to_currency.lower(), payout.to_network.lower()) == (
        currency, network)


class PayoutRunner:
    def __init__(self, session_factory: sessionmaker[Session], jobs: JobQueue, exchanges: PayoutExchanges,
                 wallet: HostWallet, clock: Clock, *, poll_seconds: float = 30,
                 review_after: timedelta = timedelta(hours=24), eth_min_fee_multiple: Decimal = Decimal(10),
                 checkpoint: Callable[[str], None] | None = None):
        self.session_factory = session_factory
        self.jobs = jobs
        self.exchanges = exchanges
        self.wallet = wallet
        self.clock = clock
        self.poll = timedelta(seconds=poll_seconds)
        self.review_after = review_after
        # Direct ETH payouts worth less than this many times their gas wait for more (carried over).
        self.eth_min_fee_multiple = eth_min_fee_multiple
        self.checkpoint = checkpoint or (lambda name: None)

    async def __call__(self, job: ClaimedJob) -> RunAgain | None:
        return await asyncio.to_thread(self.run_job, int(job.payload["payout_id"]))

    def run_job(self, payout_id: int) -> RunAgain | None:
        """A run of the payout's job: `RunAgain` when the payout waits, so the same job looks again."""
        _, waiting = self._run(payout_id)
        return RunAgain(self.clock.now() + self.poll) if waiting else None

    def run(self, payout_id: int) -> PayoutStatus | None:
        """Advance the payout as far as it goes now; its status after (None: another run has it)."""
        return self._run(payout_id)[0]

    def _run(self, payout_id: int) -> tuple[PayoutStatus | None, bool]:
        with log_context(payout_id=payout_id), \
                advisory_lock(self.wallet.engine, f"payout:{payout_id}", wait=False) as mine:
            if not mine:
                logger.info("payout %s is being run by another worker; leaving it to them", payout_id)
                return None, False
            try:
                return self._advance(payout_id)
            except (NeedsReview, ProviderError, TransferRefused) as refused:
                return self._park(payout_id, f"{type(refused).__name__}: {refused}"), False
            except Exception as failure:  # noqa: BLE001 - any other failure is retried, then reviewed
                if self._failed(payout_id, failure):
                    return PayoutStatus.NEEDS_REVIEW, False
                raise PayoutFailed(f"payout {payout_id}: {type(failure).__name__}: {failure}") from failure

    # ---- the steps -------------------------------------------------------------------------------

    def _advance(self, payout_id: int) -> tuple[PayoutStatus, bool]:
        """Take steps until the payout ends or waits: (its status, whether it waits)."""
        for _ in range(12):
            payout = self._load(payout_id)
            step = {
                PayoutStatus.PENDING: self._start,
                PayoutStatus.EXCHANGE_REQUESTED: self._create_exchange,
                PayoutStatus.EXCHANGE_CREATED: self._fund,
                PayoutStatus.FUNDING: self._confirm_funding,
                PayoutStatus.FUNDED: self._follow_exchange,
            }.get(payout.status)
            if step is None:
                return payout.status, False
            if payout.status == PayoutStatus.PENDING and self._held(payout):
                return payout.status, True
            if step(payout) == _WAIT:
                return payout.status, True
        # Still moving (quotes expiring one after another): never leave an active payout without a job.
        return self._load(payout_id).status, True

    def _start(self, payout: Payout) -> None:
        if is_direct(payout):
            if payout.funding_asset == ETH:
                amount = self.exchanges.eth_worth(payout.amount_usd)
            else:
                amount = payout.amount_usd.quantize(Decimal("1e-6"))  # shares are micro-dollars already
            if amount <= 0:
                self._carry_over(payout, "worth less than the smallest unit of the asset")
                return
            if payout.funding_asset == ETH and (why := self._below_gas_minimum(payout, amount)):
                self._carry_over(payout, why)
                return
            self._send(payout, PayoutStatus.PENDING, amount, payout.to_address)
            return
        try:
            if payout.kind == PayoutKind.SWEEP:
                # The host converts for itself: ask for exactly the USDT the shares are locked at.
                quote = self.exchanges.quote(ETH, "usdt", "eth", to_amount=payout.amount_usd.quantize(Decimal("1e-6")))
            elif payout.funding_asset == ETH:
                quote = self.exchanges.quote(ETH, payout.to_currency, payout.to_network,
                                             from_amount=self.exchanges.eth_worth(payout.amount_usd))
            else:
                quote = self.exchanges.quote(USDT, payout.to_currency, payout.to_network, from_amount=payout.amount_usd)
        except BelowMinimum as below:
            self._carry_over(payout, str(below))
            return
        self._move(payout.id, PayoutStatus.PENDING, status=PayoutStatus.EXCHANGE_REQUESTED, rate_id=quote.rate_id,
                   from_amount=quote.from_amount, to_amount=quote.to_amount, exchange_requested_at=self.clock.now())

    def _below_gas_minimum(self, payout: Payout, amount: Decimal) -> str | None:
        """Why a direct ETH payout is too small to send now (its gas would eat too much of it)."""
        units = base_units(amount, ETH)
        fee = self.wallet.transfer_fee(ETH, payout.to_address, units)
        if units >= fee * self.eth_min_fee_multiple:
            return None
        return (f"{amount} ETH is less than {self.eth_min_fee_multiple} times its network fee "
                f"({Decimal(fee).scaleb(-18)} ETH now)")

    def _create_exchange(self, payout: Payout) -> None:
        # Only exchanges still waiting for a deposit count, and none another payout holds (two
        # payouts to one address for one amount look alike when ChangeNOW drops our tag).
        found = [e for e in self.exchanges.find(payout)
                 if e.status in ("new", "waiting") and not self._held_elsewhere(e.exchange_id, payout.id)]
        if found:
            tagged = [e for e in found if e.tagged]
            exchange, others = (tagged or found)[0], [e for e in found if e is not (tagged or found)[0]]
            if others:
                self._alert(payout, f"ChangeNOW has {len(found)} exchanges that look like its own; recording "
                                    f"{exchange.exchange_id}, leaving {[e.exchange_id for e in others]} unfunded",
                            "several-exchanges")
            logger.info("payout %s: found its exchange %s again", payout.id, exchange.exchange_id)
            self._record_exchange(payout, exchange.exchange_id, exchange.payin_address,
                                  exchange.expected_from or payout.from_amount,
                                  exchange.expected_to or payout.to_amount)
            return
        currency, network = FUNDING[payout.funding_asset][:2]
        sweep = payout.kind == PayoutKind.SWEEP
        try:
            created = self.exchanges.client.create_exchange(
                from_currency=currency, from_network=network, to_currency=payout.to_currency,
                to_network=payout.to_network, address=payout.to_address,
                from_amount=None if sweep else payout.from_amount, to_amount=payout.to_amount if sweep else None,
                type_="reverse" if sweep else "direct", rate_id=payout.rate_id,
                refund_address=self.wallet.address, user_id=user_id(payout.id))
        except ProviderError as refused:
            if refused.code in ("rate_id_not_found_or_expired", "out_of_range") or refused.status == 400 and \
                    "rate" in refused.provider_message.lower():
                logger.info("payout %s: quote no longer good (%s); quoting again", payout.id, refused.code)
                self._move(payout.id, PayoutStatus.EXCHANGE_REQUESTED, status=PayoutStatus.PENDING, rate_id=None)
                return
            raise
        self.checkpoint("after_exchange_created")
        logger.info("payout %s: exchange %s created, pay-in %s", payout.id, created.id, created.payin_address)
        self._record_exchange(payout, created.id, created.payin_address, created.from_amount, created.to_amount)

    def _record_exchange(self, payout: Payout, exchange_id: str, payin: str | None, from_amount, to_amount) -> None:
        if not self._move(payout.id, PayoutStatus.EXCHANGE_REQUESTED, status=PayoutStatus.EXCHANGE_CREATED,
                          exchange_id=exchange_id, payin_address=payin, from_amount=from_amount,
                          to_amount=to_amount):
            logger.warning("payout %s moved on while exchange %s was created; the exchange is left unfunded",
                           payout.id, exchange_id)
            self._alert(payout, f"ChangeNOW exchange {exchange_id} was created while the payout was stopped; "
                                "it is left unfunded (nothing was sent to it)", f"unfunded-{exchange_id}")

    def _fund(self, payout: Payout) -> None:
        state = self.exchanges.status(payout.exchange_id)
        if state.status in ("expired", "failed"):
            # Nothing was sent to it (the transfer is stored with the move to funding): quote afresh.
            logger.warning("payout %s: exchange %s is %s before funding; starting over", payout.id,
                           payout.exchange_id, state.status)
            self._move(payout.id, PayoutStatus.EXCHANGE_CREATED, status=PayoutStatus.PENDING, exchange_id=None,
                       payin_address=None, rate_id=None, last_error=f"exchange {payout.exchange_id} {state.status}")
            return
        if state.status not in ("new", "waiting"):
            raise NeedsReview(f"exchange {payout.exchange_id} is {state.status} before the host funded it")
        self._send(payout, PayoutStatus.EXCHANGE_CREATED, payout.from_amount, payout.payin_address)

    def _send(self, payout: Payout, expected: PayoutStatus, amount: Decimal, to: str) -> None:
        units = base_units(amount, payout.funding_asset)

        def stored(session: Session) -> None:
            moved = session.execute(update(Payout).where(Payout.id == payout.id, Payout.status == expected).values(
                status=PayoutStatus.FUNDING, from_amount=amount,
                to_amount=amount if is_direct(payout) else payout.to_amount, failing_since=None,
                updated_at=self.clock.now()))
            if rows_touched(moved) != 1:
                raise RuntimeError(f"payout {payout.id} left {expected.value} while its transfer was signed")

        self.wallet.send(payout.id, payout.kind.value, payout.funding_asset, to, units, stored)

    def _confirm_funding(self, payout: Payout) -> str | None:
        # Signed but never accepted by the node (a crash, or a fee it refused) is sent, or replaced
        # when it has waited too long, by the same path as a transfer waiting in the pool.
        signed = self.wallet.stored(payout.id)
        status = self.wallet.confirm(signed)
        if status == ChainTxStatus.BROADCAST:
            return _WAIT
        if status == ChainTxStatus.FAILED:
            raise NeedsReview(f"funding transfer {signed.tx_hash} reverted")
        tx = self.wallet.stored(payout.id)  # the version mined, which need not be the newest signed
        if is_direct(payout):
            self._move(payout.id, PayoutStatus.FUNDING, status=PayoutStatus.FINISHED, payout_hash=tx.tx_hash,
                       finished_at=self.clock.now())
            logger.info("payout %s finished: %s sent directly in %s", payout.id, payout.funding_asset, tx.tx_hash)
        else:
            self._move(payout.id, PayoutStatus.FUNDING, status=PayoutStatus.FUNDED)
        return None

    def _follow_exchange(self, payout: Payout) -> str | None:
        state = self.exchanges.status(payout.exchange_id)
        if state.status == "finished":
            self._move(payout.id, PayoutStatus.FUNDED, status=PayoutStatus.FINISHED, payout_hash=state.payout_hash,
                       to_amount=state.amount_to or payout.to_amount, finished_at=self.clock.now())
            logger.info("payout %s finished: exchange %s paid %s %s in %s", payout.id, payout.exchange_id,
                        state.amount_to, payout.to_currency, state.payout_hash)
            return None
        if state.terminal:
            refund = f" (refund {state.refund_amount} in {state.refund_hash})" if state.refund_hash else ""
            raise NeedsReview(f"exchange {payout.exchange_id} ended {state.status}{refund}")
        return _WAIT

    # ---- recording -------------------------------------------------------------------------------

    def _load(self, payout_id: int) -> Payout:
        with self.session_factory() as session:
            payout = session.get(Payout, payout_id)
            if payout is None:
                raise LookupError(f"no payout {payout_id}")
            session.expunge(payout)
            return payout

    def _move(self, payout_id: int, expected: PayoutStatus, **values) -> bool:
        """Compare-and-set: apply `values` only if the payout is still `expected`."""
        values.setdefault("failing_since", None)
        with self.session_factory.begin() as session:
            result = session.execute(update(Payout).where(Payout.id == payout_id, Payout.status == expected)
                                     .values(updated_at=self.clock.now(), **values))
        return rows_touched(result) == 1

    def _held_elsewhere(self, exchange_id: str, payout_id: int) -> bool:
        with self.session_factory() as session:
            return session.scalar(select(Payout.id).where(Payout.exchange_id == exchange_id,
                                                          Payout.id != payout_id)) is not None

    def _held(self, payout: Payout) -> bool:
        """Delivery before money, and no money to an owner Telegram no longer lists as admin: a
        held payout waits (its job looks again); the end of a hold also queues it at once."""
        with self.session_factory() as session:
            reason = payout_hold(session, payout.id)
        if reason is not None:
            logger.info("payout %s held: %s", payout.id, reason)
        return reason is not None

    def _carry_over(self, payout: Payout, why: str) -> None:
        with self.session_factory.begin() as session:
            row = session.get(Payout, payout.id, with_for_update=True)
            if row.status != PayoutStatus.PENDING:
                return
            row.last_error, row.updated_at, row.failing_since = why, self.clock.now(), None
            if row.kind == PayoutKind.SWEEP:
                # A sweep is the host's own business: its shares simply wait for the next one.
                session.execute(update(Accumulation).where(Accumulation.sweep_id == row.id).values(sweep_id=None))
                row.status = PayoutStatus.CANCELLED
            else:
                row.status = PayoutStatus.CARRIED_OVER
        logger.info("payout %s (%s USD) carried over: %s", payout.id, payout.amount_usd, why)

    def _failed(self, payout_id: int, failure: Exception) -> bool:
        return review.record_failure(self.session_factory, self.jobs, self.clock.now(), payout_id, failure,
                                     self.review_after)

    def _park(self, payout_id: int, reason: str) -> PayoutStatus:
        return review.park(self.session_factory, self.jobs, self.clock.now(), payout_id, reason)

    def _alert(self, payout: Payout, text: str, what: str) -> None:
        with self.session_factory.begin() as session:
            alert_operators(session, self.jobs, f"Payout {payout.id}: {text}", key=f"payout-{what}:{payout.id}")
