"""What `/status` (and the alerts built on it) checks, each within a timeout, each with a level.

`ok`: nothing to do. `degraded`: working, but an operator has something to look at (a dead
job, a payout failing, a payment in review). `down`: the service is not doing its job (the
database does not answer, nobody is polling Telegram, the worker loop has stopped); `/status`
then answers 503. A check that cannot finish in time says so instead of hanging the answer.

The database checks share one connection and one round of queries; the wallet check talks to
the chain and ChangeNOW, so its result is kept for a minute.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from telepay.models import (
    InviteStatus, Invoice, InvoiceStatus, Job, JobState, Payment, Payout, PayoutStatus, RefusedIpn,
)
from telepay.services.delivery import delivery_queue

logger = logging.getLogger(__name__)

OK, DEGRADED, DOWN = "ok", "degraded", "down"
_RANK = {OK: 0, DEGRADED: 1, DOWN: 2}

# Thresholds. Why these: a long poll lasts ~15 s and PTB backs off up to 30 s, so 90 s without
# an answer is a poller that is not working; the worker turns at least every WORKER_POLL_SECONDS.
POLL_DOWN_SECONDS = 90
CONFLICT_RECENT_SECONDS = 300
WORKER_DOWN_SECONDS = 60
DUE_JOB_DEGRADED_SECONDS = 300
REFUSED_IPNS_DEGRADED = 10  # in the last hour: a handful is noise from scanners, more is a fault
FAILED_INVOICES_DEGRADED = 3  # in the last hour: NOWPayments refusing to create them (the API key?)
DISK_DEGRADED_BYTES, DISK_DOWN_BYTES = 1 << 30, 100 << 20
WALLET_CACHE_SECONDS = 60
OPERATOR_MESSAGES = "operator:%"  # dedupe keys of direct messages that carry operator alerts


@dataclass
class Check:
    name: str
    level: str = OK
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    status: str
    checks: list[Check]

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.reason}" for c in self.checks if c.level != OK and c.reason]

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": self.reasons,
                "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in self.checks}}


def worst(levels) -> str:
    return max(levels, key=_RANK.__getitem__, default=OK)


class HealthChecks:
    def __init__(self, services, *, timeout: float = 3.0) -> None:
        self.services = services
        self.settings = services.settings
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="health")
        self._wallet: tuple[float, Check] | None = None
        self._wallet_lock = threading.Lock()

    def run(self) -> Report:
        database = self._pool.submit(self.database_checks)
        wallet = self._pool.submit(self.wallet_check)
        checks = [self.polling_check(), self.worker_check(), self.disk_check()]
        deadline = time.monotonic() + self.timeout
        try:
            checks += database.result(timeout=max(0.1, deadline - time.monotonic()))
        except FutureTimeout:
            checks.append(Check("database", DOWN, f"no answer within {self.timeout:g} s"))
        except Exception as error:  # noqa: BLE001 - the failure is the finding
            checks.append(Check("database", DOWN, f"{type(error).__name__}: {error}"))
        try:
            checks.append(wallet.result(timeout=max(0.1, deadline - time.monotonic())))
        except FutureTimeout:
            checks.append(Check("host_wallet", DEGRADED, f"no answer within {self.timeout:g} s"))
        except Exception as error:  # noqa: BLE001
            checks.append(Check("host_wallet", DEGRADED, f"could not be read: {type(error).__name__}: {error}"))
        return Report(worst(c.level for c in checks), checks)

    # ---- in-process -------------------------------------------------------------------------

    def polling_check(self) -> Check:
        watch, beats = self.services.poll_watch, self.services.beats
        since = watch.seconds_since_success()
        data = {"seconds_since_success": None if since is None else round(since, 1),
                "last_success_at": watch.last_success_at.isoformat() if watch.last_success_at else None,
                "last_status": watch.last_status, "restarts": watch.restarts}
        if beats.age("poll_supervisor") is None:
            return Check("polling", OK, None, {**data, "note": "this process does not poll"})
        quiet = since if since is not None else beats.uptime()
        if quiet > POLL_DOWN_SECONDS:
            return Check("polling", DOWN, f"no answer from getUpdates for {int(quiet)} s: "
                                          f"{watch.last_error or 'no error recorded'}", data)
        if watch.last_conflict is not None and watch.clock() - watch.last_conflict < CONFLICT_RECENT_SECONDS:
            return Check("polling", DEGRADED, "Telegram answered 409 Conflict: another process is polling "
                                              "with this bot token (a second `telepay run`?)", data)
        return Check("polling", OK, None, data)

    def worker_check(self) -> Check:
        age = self.services.beats.age("worker")
        if age is None:
            return Check("worker", OK, None, {"note": "this process runs no worker"})
        if age > WORKER_DOWN_SECONDS:
            return Check("worker", DOWN, f"the worker loop has not turned for {int(age)} s", {"heartbeat_age": age})
        return Check("worker", OK, None, {"heartbeat_age": round(age, 1)})

    def disk_check(self) -> Check:
        path = Path(self.settings.data_dir).resolve()
        while not path.exists() and path != path.parent:  # not made yet: its filesystem is the parent's
            path = path.parent
        try:
            usage = shutil.disk_usage(path)
        except OSError as error:
            return Check("disk", DEGRADED, f"cannot read free space of {path}: {error}")
        data = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}
        if usage.free < DISK_DOWN_BYTES:
            return Check("disk", DOWN, f"{usage.free >> 20} MiB free on {path}", data)
        if usage.free < DISK_DEGRADED_BYTES:
            return Check("disk", DEGRADED, f"{usage.free >> 20} MiB free on {path}", data)
        return Check("disk", OK, None, data)

    # ---- the database -------------------------------------------------------------------------

    def database_checks(self) -> list[Check]:
        now = self.services.clock.now()
        started = time.perf_counter()
        with self.services.session_factory() as session:
            session.execute(text("SELECT 1"))
            checks = [Check("database", OK, None, {"ping_ms": round((time.perf_counter() - started) * 1000, 2)})]
            checks.append(self._due_jobs(session, now))
            checks.append(self._dead_jobs(session))
            checks.append(self._payouts(session, now))
            checks.append(self._reviews(session))
            checks.append(self._delivery(session, now))
            checks.append(self._ipns(session, now))
            checks.append(self._alert_delivery(session))
            session.rollback()
        return checks

    def _due_jobs(self, session, now: datetime) -> Check:
        rows = session.execute(select(Job.kind, func.count(), func.min(Job.run_at))
                               .where(Job.state == JobState.QUEUED, Job.run_at <= now).group_by(Job.kind)).all()
        by_kind = {kind: {"due": count, "oldest_age_seconds": round((now - oldest).total_seconds(), 1)}
                   for kind, count, oldest in rows}
        stuck = {k: v for k, v in by_kind.items() if v["oldest_age_seconds"] > DUE_JOB_DEGRADED_SECONDS}
        if stuck:
            return Check("job_queue", DEGRADED, "jobs waiting past their time (queue not draining): " + ", ".join(
                f"{k} {v['due']} (oldest {int(v['oldest_age_seconds'])} s)" for k, v in stuck.items()), by_kind)
        return Check("job_queue", OK, None, by_kind)

    def _dead_jobs(self, session) -> Check:
        rows = session.execute(select(Job.id, Job.kind, Job.last_error).where(Job.state == JobState.DEAD)
                               .order_by(Job.id.desc()).limit(20)).all()
        count = session.scalar(select(func.count()).where(Job.state == JobState.DEAD))
        latest = [{"id": i, "kind": k, "last_error": (e or "").splitlines()[0][:200] if e else None}
                  for i, k, e in rows]
        if count:
            kinds = sorted({r["kind"] for r in latest})
            return Check("dead_jobs", DEGRADED, f"{count} dead job(s) ({', '.join(kinds)}); see `telepay jobs list "
                                                f"--state dead`, then `telepay jobs retry ID`",
                         {"count": count, "latest": latest})
        return Check("dead_jobs", OK, None, {"count": 0})

    def _payouts(self, session, now: datetime) -> Check:
        minutes = self.settings.payout_failing_alert_minutes
        failing = session.execute(select(Payout.id, Payout.failing_since, Payout.last_error)
                                  .where(Payout.failing_since.is_not(None),
                                         Payout.failing_since <= now - timedelta(minutes=minutes))).all()
        review = session.scalars(select(Payout.id).where(Payout.status == PayoutStatus.NEEDS_REVIEW)).all()
        data = {"failing": [{"id": i, "since": s.isoformat(), "last_error": (e or "")[:200]} for i, s, e in failing],
                "needs_review": list(review)}
        reasons = []
        if failing:
            reasons.append(f"payout(s) {', '.join(str(i) for i, _, _ in failing)} failing for over {minutes} min "
                           f"(`telepay payouts show ID`)")
        if review:
            reasons.append(f"payout(s) {', '.join(map(str, review))} need review (`telepay payouts show ID`)")
        return Check("payouts", DEGRADED if reasons else OK, "; ".join(reasons) or None, data)

    def _reviews(self, session) -> Check:
        ids = session.scalars(select(Payment.id).where(Payment.needs_review.is_not(None))
                              .order_by(Payment.id.desc()).limit(20)).all()
        if ids:
            return Check("payments_review", DEGRADED, f"{len(ids)} payment(s) need review: "
                                                      f"{', '.join(map(str, ids))}", {"ids": list(ids)})
        return Check("payments_review", OK, None, {"ids": []})

    def _delivery(self, session, now: datetime) -> Check:
        """Buyers who paid and are not let in: waiting on a paused pair (degraded), or past the
        delivery deadline and in review (an operator must act: down is too loud, degraded names them)."""
        queue = delivery_queue(session)
        data = {"waiting": sum(w.status == InviteStatus.WAITING for w in queue),
                "review": sum(w.status == InviteStatus.REVIEW for w in queue),
                "oldest_seconds": int((now - queue[0].since).total_seconds()) if queue else 0}
        if not queue:
            return Check("delivery_queue", OK, None, data)
        channels = sorted({w.channel_title for w in queue})
        return Check("delivery_queue", DEGRADED,
                     f"{len(queue)} paying buyer(s) not let in yet ({data['waiting']} waiting, {data['review']} "
                     f"in review, oldest {data['oldest_seconds'] // 60} min) in {', '.join(channels[:5])}; "
                     "see `telepay subscribers waiting`", data)

    def _ipns(self, session, now: datetime) -> Check:
        hour_ago = now - timedelta(hours=1)
        refused = dict(session.execute(select(RefusedIpn.reason, func.count())
                                       .where(RefusedIpn.refused_at >= hour_ago).group_by(RefusedIpn.reason)).all())
        # Not created: refused by NOWPayments (provider_error kept), or left without an answer for
        # minutes; a fresh one without an error may still be on its way to NOWPayments.
        refused_invoice = (Invoice.status == InvoiceStatus.CREATED) & (Invoice.created_at >= hour_ago) & (
            Invoice.provider_error.is_not(None) | (Invoice.created_at <= now - timedelta(minutes=2)))
        not_created = session.scalar(select(func.count()).where(refused_invoice))
        last_error = session.scalar(select(Invoice.provider_error).where(
            refused_invoice, Invoice.provider_error.is_not(None)).order_by(Invoice.created_at.desc()).limit(1))
        data = {"refused_last_hour": refused, "invoices_not_created_last_hour": not_created,
                "last_provider_error": last_error}
        reasons = []
        if sum(refused.values()) >= REFUSED_IPNS_DEGRADED:
            reasons.append(f"{sum(refused.values())} IPNs refused in the last hour: "
                           + ", ".join(f"{r} {n}" for r, n in sorted(refused.items())))
        if not_created >= FAILED_INVOICES_DEGRADED:
            said = f"; it said: {last_error.splitlines()[0][:160]}" if last_error else ""
            reasons.append(f"{not_created} invoices NOWPayments did not create in the last hour{said} "
                           "(check NOWPAYMENTS_API_KEY: `telepay check-config --online`)")
        return Check("payments_in", DEGRADED if reasons else OK, "; ".join(reasons) or None, data)

    def _alert_delivery(self, session) -> Check:
        """Alerts owed to someone: service alerts' messages still retrying or dead, and the
        monitor's sends that have not got through (telepay.ops.alerts)."""
        stuck = session.execute(select(Job.id, Job.state, Job.attempts, Job.last_error).where(
            ((Job.kind == "message.direct") & Job.dedupe_key.like(OPERATOR_MESSAGES)) | (Job.kind == "operator.alert"),
            (Job.state == JobState.DEAD) | ((Job.state == JobState.QUEUED) & (Job.attempts > 0)))).all()
        monitor = getattr(self.services, "alert_monitor", None)
        owed = monitor.undelivered() if monitor is not None else {}
        data = {"undelivered_jobs": [{"id": i, "state": str(s), "attempts": a} for i, s, a, _ in stuck],
                "undelivered_alerts": owed}
        reasons = []
        if stuck:
            first = (stuck[0][3] or "retrying").splitlines()[0][:120]
            reasons.append(f"{len(stuck)} operator message(s) not delivered yet ({first})")
        if owed:
            reasons.append("alerts not delivered yet: " + "; ".join(
                f"{key} via {', '.join(f'{c} ({e})' for c, e in channels.items())}" for key, channels in owed.items()))
        if not self.settings.admin_chat_ids and not self.settings.alert_webhook_url:
            reasons.append("alerts have nowhere to go: set ADMIN_CHAT_IDS or ALERT_WEBHOOK_URL")
        return Check("alerts", DEGRADED if reasons else OK, "; ".join(reasons) or None, data)

    # ---- the host wallet ------------------------------------------------------------------------

    def wallet_check(self) -> Check:
        with self._wallet_lock:
            if self._wallet and time.monotonic() - self._wallet[0] < WALLET_CACHE_SECONDS:
                return self._wallet[1]
            check = self._read_wallet()
            self._wallet = (time.monotonic(), check)
            return check

    def _read_wallet(self) -> Check:
        payouts = self.services.payouts
        if payouts is None:
            return Check("host_wallet", OK, None, {"note": "payouts are not configured"})
        scheduler = payouts.scheduler
        owed = scheduler.owed_unfunded()
        eth_price = payouts.exchanges.eth_price_usd()
        have = {"ETH": Decimal(payouts.wallet.balance("ETH")).scaleb(-18) * eth_price,
                "USDT": Decimal(payouts.wallet.balance("USDT")).scaleb(-6)}
        margin = scheduler.low_balance_usd
        data = {"address": payouts.wallet.address, "eth_price_usd": str(eth_price),
                **{f"{asset.lower()}_usd": str(round(have[asset], 2)) for asset in have},
                **{f"owed_{asset.lower()}_usd": str(owed[asset]) for asset in owed}, "margin_usd": str(margin)}
        short = [a for a in have if have[a] - owed.get(a, Decimal(0)) < margin]
        if short:
            return Check("host_wallet", DEGRADED, "low on " + ", ".join(
                f"{a} ({have[a]:.2f} USD against {owed.get(a, 0):.2f} owed, margin {margin})" for a in short)
                + f"; top up {payouts.wallet.address} (`telepay wallet`)", data)
        return Check("host_wallet", OK, None, data)
