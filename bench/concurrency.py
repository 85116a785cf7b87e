"""Users served concurrently: `/start` latency of bystanders while buyers press "Pay" and the
payment provider is slow, against the same run with the provider answering at once.

`--buyers` buyers each open a channel's tier link, then all press "💳 Pay" together; each press
makes `telepay run` create a NOWPayments invoice. In the slow run the sandbox NOWPayments holds
every invoice answer back `--delay` seconds (a slow day at the provider). Meanwhile `--users`
other people each send `/start` `--starts` times, one after another, and each is timed from the
moment the update is queued in the sandbox Telegram to the moment the bot's `sendMessage` to that
person arrives. Both runs go through the same process, the same sandboxes, fresh people each run.
Goal: the slow run's p99 within 2x of the fast run's (a slow provider call blocks nobody else).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from decimal import Decimal

from sqlalchemy import create_engine

from bench.common import load_average, pct, running_telepay
from telepay.models import Channel, ChannelStatus, Tier
from telepay.models.engine import make_session_factory
from telepay_sandbox.database import scratch_database
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import Person, RateLimits, TelegramSandbox

TOKEN = "7100000003:bench-concurrency-token"
BOT = "TelePayBenchConcurrencyBot"
GOAL = 2.0


def _seed(database_url: str) -> str:
    key = "cc" + uuid.uuid4().hex[:8]
    engine = create_engine(database_url)
    with make_session_factory(engine).begin() as session:
        channel = Channel(key=key, owner_user_id=1, open_chat_id=-1003, closed_chat_id=-1004,
                          open_title="Bench News", closed_title="Bench VIP", status=ChannelStatus.ACTIVE,
                          payout_currency="usdt", payout_network="trx",
                          payout_address="TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
        channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30))
        session.add(channel)
    engine.dispose()
    return key


def _timed_start(telegram: TelegramSandbox, person: Person) -> float:
    mark = telegram.mark()
    started = time.time()
    person.send("/start")
    reply = telegram.wait_for_call("sendMessage", lambda c: int(c.params.get("chat_id", 0)) == person.id,
                                   timeout=120, after=mark)
    return (reply.time - started) * 1000


def _one_run(telegram: TelegramSandbox, nowpayments: NowPaymentsSandbox, key: str, args, label: str,
             slow: bool) -> dict:
    buyers, cards = [], []
    for n in range(args.buyers):
        buyer = telegram.create_user(f"{label} buyer {n}")
        buyer.open_deep_link(f"https://t.me/{BOT}?start={key}-1")
        cards.append(buyer.wait_for_message(lambda m: "Pay $" in str(m.buttons), timeout=60))
        buyers.append(buyer)
    users = [telegram.create_user(f"{label} user {n}") for n in range(args.users)]
    for user in users:  # warm: each bystander's first /start is not measured
        _timed_start(telegram, user)
    if slow:
        nowpayments.fail_next("/v1/invoice", method="POST", delay=args.delay, count=args.buyers)
    latencies: list[float] = []
    lock = threading.Lock()

    def bystander(user: Person) -> None:
        mine = [_timed_start(telegram, user) for _ in range(args.starts)]
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    for buyer, card in zip(buyers, cards):
        buyer.press(card, text="💳 Pay $5.00")
    threads = [threading.Thread(target=bystander, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for buyer in buyers:
        buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=60 + args.buyers * args.delay)
    invoices_seconds = time.perf_counter() - started
    return {"p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99), "max_ms": max(latencies),
            "invoices_s": invoices_seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buyers", type=int, default=20, help="buyers pressing Pay at once")
    parser.add_argument("--users", type=int, default=4, help="bystanders sending /start meanwhile")
    parser.add_argument("--starts", type=int, default=10, help="/start per bystander, one after another")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the slow provider holds each answer")
    args = parser.parse_args(argv)

    loads = [load_average()]
    with scratch_database("telepay_bench") as database_url:
        key = _seed(database_url)
        with TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()) as telegram, \
                NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret") as nowpayments, \
                running_telepay(database_url, telegram, nowpayments=nowpayments):
            fast = _one_run(telegram, nowpayments, key, args, "fast", slow=False)
            loads.append(load_average())
            slow = _one_run(telegram, nowpayments, key, args, "slow", slow=True)
            loads.append(load_average())
            errors = telegram.errors
    ratio = slow["p99_ms"] / fast["p99_ms"]
    print(f"concurrency: {args.buyers} buyers press Pay, {args.users} bystanders x {args.starts} /start; "
          f"slow provider holds each invoice {args.delay:.1f} s; load average {' -> '.join(loads)}")
    for name, figures in (("fast provider", fast), (f"provider +{args.delay:.0f} s", slow)):
        print(f"  {name:18} /start p50 {figures['p50_ms']:8.1f} ms   p99 {figures['p99_ms']:8.1f} ms   "
              f"max {figures['max_ms']:8.1f} ms   all invoices in {figures['invoices_s']:6.1f} s")
    print(f"  ratio slow/fast /start p99: {ratio:.2f} (goal <= {GOAL:.1f}) -> {'MET' if ratio <= GOAL else 'NOT MET'}")
    return {"fast": fast, "slow": slow, "ratio": ratio, "sandbox_errors": errors}


if __name__ == "__main__":
    main()
