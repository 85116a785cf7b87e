"""Resident memory of `telepay run`: idle after start, and at its peak under a storm of IPNs.

The process runs against the sandbox Telegram and PostgreSQL (no embedded database, so no
child processes; any that appear are counted). Its RSS is read from `/proc/<pid>/status`
(VmRSS, summed over the process and its descendants), sampled every 20 ms during the load;
the peak is the larger of the samples and the kernel's own high-water mark (VmHWM). The load
is signed IPNs (five statuses per payment, as NOWPayments sends them) from concurrent clients
in a separate process. The baseline is a bare `python -c "import telegram, flask, sqlalchemy"`
measured in the same run: what the interpreter and the three main libraries cost on their own.
Goal: < 200 MB idle and at the peak.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine

from bench.common import accepted, load_average, run_load, running_telepay
from bench.webhooks import STATUSES, ipn
from telepay.models import Channel, ChannelStatus, Invoice, InvoiceKind, Tier
from telepay.models.engine import make_session_factory
from telepay_sandbox.database import scratch_database
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay.security import nowpayments

TOKEN = "7100000003:bench-memory-token"
BOT = "TelePayBenchMemoryBot"
IPN_SECRET = "sandbox-nowpayments-ipn-secret"  # what `sandbox_env` configures
GOAL_MB = 200.0
_BARE = ("import telegram, flask, sqlalchemy\n"
         "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')))")


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """`pid` and every descendant, from the children lists the kernel keeps per thread."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def rss_mb(pid: int) -> float:
    return sum(_status_kib(p, "VmRSS") for p in _tree(pid)) / 1024


def bare_rss_mb() -> float:
    out = subprocess.run([sys.executable, "-c", _BARE], capture_output=True, text=True, check=True).stdout
    return int(out) / 1024


def _requests(order_id: str, count: int) -> list[tuple[bytes, dict[str, str]]]:
    requests = []
    for n in range(count):
        body = ipn(order_id, 20_000_000 + n // len(STATUSES), STATUSES[n % len(STATUSES)])
        requests.append((body, {"Content-Type": "application/json",
                                nowpayments.SIGNATURE_HEADER: nowpayments.nowpayments_signature(IPN_SECRET, body)}))
    return requests


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ipns", type=int, default=5000, help="signed IPNs in the load")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="wait after start before reading")
    args = parser.parse_args(argv)

    with scratch_database("telepay_bench") as database_url, \
            TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()) as telegram:
        buyer = telegram.create_user("Bench Buyer", username="bench_buyer")
        engine = create_engine(database_url)
        with make_session_factory(engine).begin() as session:
            channel = Channel(key="mem" + uuid.uuid4().hex[:8], owner_user_id=1, open_chat_id=-1001,
                              closed_chat_id=-1002, open_title="Bench News", closed_title="Bench VIP",
                              status=ChannelStatus.ACTIVE)
            channel.tiers.append(Tier(number=1, price_usd=Decimal("15.00"), days=30))
            session.add(channel)
            session.flush()
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                              tier_id=channel.tiers[0].id, buyer_user_id=buyer.id, price_usd=Decimal("15.00"),
                              days=30)
            session.add(invoice)
        engine.dispose()
        requests = _requests(invoice.id, args.ipns)

        bare = bare_rss_mb()
        with running_telepay(database_url, telegram) as process:
            pid = process.proc.pid
            time.sleep(args.idle_seconds)
            idle = rss_mb(pid)
            load_idle = load_average()

            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append(rss_mb(pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                result = run_load(process.base_url + "/webhooks/nowpayments", requests, args.concurrency, accepted)
            finally:
                done.set()
                sampler.join()
            load_peak = load_average()
            peak = max(samples + [_status_kib(pid, "VmHWM") / 1024])
            after = rss_mb(pid)
            children = len(_tree(pid)) - 1

    print(f"memory: telepay run idle {args.idle_seconds:g} s after start, then {args.ipns} signed IPNs from "
          f"{args.concurrency} clients; child processes {children}; load average {load_idle} -> {load_peak}")
    print(f"  bare python + telegram, flask, sqlalchemy   {bare:7.1f} MB")
    print(f"  telepay run, idle                           {idle:7.1f} MB   ({idle / bare:.2f} x bare)")
    print(f"  telepay run, peak under IPN load            {peak:7.1f} MB   ({peak / bare:.2f} x bare); "
          f"after the load {after:.1f} MB")
    print("  " + result.line("IPN load (accepted)"))
    worst = max(idle, peak)
    print(f"  worst {worst:.1f} MB (goal < {GOAL_MB:.0f} MB) -> {'MET' if worst < GOAL_MB else 'NOT MET'}")
    return {"bare_mb": bare, "idle_mb": idle, "peak_mb": peak, "after_mb": after, "ratio_peak": peak / bare,
            "ipn_errors": result.errors, "ipn_rps": result.rate, "children": children}


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    main()
