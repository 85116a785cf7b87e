"""Donation keypad presses through `telepay run`, against a bare PTB handler on the same sandbox.

Donors open a registered channel's donate link and press keypad keys, each waiting for the
keypad to be edited before the next press (closed loop, `--donors` at once). A press is timed
from the moment its `callback_query` update is queued in the sandbox Telegram to the moment the
sandbox receives the matching `editMessageText`. The baseline is a bare python-telegram-bot
`Application` (no persistence, no rate limiter, no database) with one `CallbackQueryHandler`
that answers the query and edits the message to the same keypad text, polling the same sandbox
with the same `base_url`, driven by the same presses. Both bots run in their own process; the
sandbox and the donors run in this one. The sandbox's flood limits are off for both (keypad
edits and answers are not rate limited by Telegram's message limits anyway).
`--explain` adds the bare handler built with TelePay's rate limiter (`MessageRateLimiter`), which
separates what the limiter costs from what the rest of TelePay costs.
Goal: TelePay handles at least 0.7 of the bare rate.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import threading
import time
import uuid
from decimal import Decimal

from sqlalchemy import create_engine

from bench.common import load_average, median, pct, running_telepay
from telepay.models import Channel, ChannelStatus, Tier
from telepay.models.engine import make_session_factory
from telepay_sandbox.database import scratch_database
from telepay_sandbox.telegram import MessageHandle, Person, RateLimits, TelegramSandbox

TOKEN = "7100000001:bench-keypad-token"
BOT = "TelePayBenchKeypadBot"
# Every press changes the amount ("" -> 1 -> 12 -> 1 -> ""), so every press is an edit.
CYCLE = ["kp:1", "kp:2", "kp:back", "kp:back"]
GOAL = 0.7
# As `telepay.bot.app.build_application` builds it (kept in step by hand; used by --explain only).
LIMITER = {"overall_max_rate": 28, "max_retries": 3}


def _bare_bot(base_url: str, token: str, ready, stop, limited: bool) -> None:
    """The baseline: /start shows the keypad; a press answers and edits it (runs in a child).
    `limited` gives it the rate limiter TelePay's bot is built with, to tell its share apart."""
    from telegram import Update
    from telegram.ext import ApplicationBuilder, CallbackQueryHandler, CommandHandler

    from telepay.bot.ratelimit import MessageRateLimiter

    from telepay.bot.donate import PAD, keypad_text, type_key

    async def start(update: Update, context) -> None:
        context.user_data["amount"] = ""
        await update.effective_message.reply_text(keypad_text("Bench", ""), reply_markup=PAD)

    async def press(update: Update, context) -> None:
        query = update.callback_query
        amount, _ = type_key(context.user_data.get("amount", ""), query.data.split(":", 1)[1])
        context.user_data["amount"] = amount
        await query.answer()
        await query.edit_message_text(keypad_text("Bench", amount), reply_markup=PAD)

    async def run() -> None:
        builder = ApplicationBuilder().token(token).base_url(base_url)
        if limited:
            builder = builder.rate_limiter(MessageRateLimiter(**LIMITER))
        application = builder.build()
        application.add_handler(CommandHandler("start", start))
        application.add_handler(CallbackQueryHandler(press))
        async with application:
            await application.updater.start_polling(timeout=10)
            await application.start()
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            await application.updater.stop()
            await application.stop()

    asyncio.run(run())


def _drive(telegram: TelegramSandbox, donors: list[tuple[Person, MessageHandle]], presses: int,
           warmup: int) -> tuple[float, list[float]]:
    """Every donor presses `warmup` then `presses` keys, closed loop; (seconds, latencies in ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(donors) + 1)
    failures: list[BaseException] = []

    def press_once(donor: Person, keypad: MessageHandle, n: int) -> float:
        mark = telegram.mark()
        started = time.time()
        donor.press(keypad, callback_data=CYCLE[n % len(CYCLE)])
        edit = telegram.wait_for_call(
            "editMessageText", lambda c: int(c.params.get("message_id", 0)) == keypad.message_id
            and int(c.params.get("chat_id", 0)) == keypad.chat_id, timeout=30, after=mark)
        return (edit.time - started) * 1000

    def donor_loop(donor: Person, keypad: MessageHandle) -> None:
        mine = []
        try:
            for n in range(warmup):
                press_once(donor, keypad, n)
            barrier.wait()
            for n in range(warmup, warmup + presses):
                mine.append(press_once(donor, keypad, n))
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            failures.append(error)
            barrier.abort()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=donor_loop, args=donor) for donor in donors]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"a donor failed: {failures[0]!r}") from failures[0]
    return seconds, latencies


def _bare_run(telegram: TelegramSandbox, args, limited: bool = False) -> tuple[float, list[float]]:
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=_bare_bot, args=(telegram.base_url, telegram.token, ready, stop, limited))
    child.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the bare bot did not start")
        donors = []
        for n in range(args.donors):
            donor = telegram.create_user(f"Bare donor {n}")
            donor.command("start")
            donors.append((donor, donor.wait_for_message(lambda m: "Donation to" in m.text, timeout=30)))
        return _drive(telegram, donors, args.presses, args.warmup)
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.kill()


def _telepay_run(telegram: TelegramSandbox, database_url: str, key: str, args) -> tuple[float, list[float]]:
    with running_telepay(database_url, telegram):
        donors = []
        for n in range(args.donors):
            donor = telegram.create_user(f"Donor {n}")
            donor.open_deep_link(f"https://t.me/{BOT}?start={key}-donate")
            donors.append((donor, donor.wait_for_message(lambda m: "Donation to" in m.text, timeout=30)))
        return _drive(telegram, donors, args.presses, args.warmup)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--donors", type=int, default=4, help="donors pressing at once")
    parser.add_argument("--presses", type=int, default=250, help="measured presses per donor")
    parser.add_argument("--warmup", type=int, default=4, help="unmeasured presses per donor first")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each; medians reported")
    parser.add_argument("--explain", action="store_true",
                        help="also run the bare handler with TelePay's rate limiter (MessageRateLimiter)")
    args = parser.parse_args(argv)

    with scratch_database("telepay_bench") as database_url:
        key = "kp" + uuid.uuid4().hex[:8]
        engine = create_engine(database_url)
        with make_session_factory(engine).begin() as session:
            channel = Channel(key=key, owner_user_id=1, open_chat_id=-1001, closed_chat_id=-1002,
                              open_title="Bench News", closed_title="Bench VIP", status=ChannelStatus.ACTIVE)
            channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30))
            session.add(channel)
        engine.dispose()

        loads = [load_average()]
        labels = ["bare", "limited", "telepay"] if args.explain else ["bare", "telepay"]
        runs: dict[str, list[tuple[float, list[float]]]] = {label: [] for label in labels}
        with TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()) as telegram:
            for _ in range(args.runs):
                runs["bare"].append(_bare_run(telegram, args))
                if args.explain:
                    runs["limited"].append(_bare_run(telegram, args, limited=True))
                runs["telepay"].append(_telepay_run(telegram, database_url, key, args))
                loads.append(load_average())
            errors = telegram.errors

    total = args.donors * args.presses
    figures = {}
    for label, measured in runs.items():
        rates = [total / seconds for seconds, _ in measured]
        figures[label] = {"rate": median(rates), "p50_ms": median([pct(lat, 50) for _, lat in measured]),
                          "p99_ms": median([pct(lat, 99) for _, lat in measured]), "rates": rates}
    ratio = figures["telepay"]["rate"] / figures["bare"]["rate"]
    print(f"keypad: {args.donors} donors x {args.presses} presses, closed loop, {args.runs} alternating run(s); "
          f"sandbox rate limits off for both; load average {' -> '.join(loads)}")
    names = {"bare": "bare PTB handler", "limited": "bare + TelePay's MessageRateLimiter",
             "telepay": "telepay run (donate keypad)"}
    for label, f in figures.items():
        print(f"  {names[label]:37} {f['rate']:8.1f} presses/s   p50 {f['p50_ms']:7.2f} ms   p99 {f['p99_ms']:7.2f} ms"
              f"   (runs: {', '.join(f'{r:.1f}' for r in f['rates'])})")
    print(f"  ratio telepay/bare presses per second: {ratio:.2f} (goal >= {GOAL:.2f}) -> "
          f"{'MET' if ratio >= GOAL else 'NOT MET'}")
    return {"bare_rate": figures["bare"]["rate"], "telepay_rate": figures["telepay"]["rate"], "ratio": ratio,
            "bare_p99_ms": figures["bare"]["p99_ms"], "telepay_p99_ms": figures["telepay"]["p99_ms"],
            "sandbox_errors": errors}


if __name__ == "__main__":
    main()
