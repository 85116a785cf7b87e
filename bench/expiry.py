"""The expiry sweep on a large table: batch query time, and removals per second through the
sandbox Telegram against its configured message rate.

1. `--subscriptions` rows (default 1,000,000) are written with one `INSERT ... SELECT
   generate_series`; `--due` of them (default 10,000) have run out.
2. Query: the due-rows SELECT through the partial index, against the same SELECT as a sequential
   scan (the baseline: what the table would cost without the index), both by EXPLAIN ANALYZE;
   then the sweep's real batches (claim + mark expired + queue removal jobs, one statement each)
   timed one by one. Goal: under 50 ms per batch.
3. Removals: `telepay run` against the sandbox Telegram with its flood limit set to `--rate`
   messages/s (the bot's own limiter paces messages at PTB's default 30/s, so the two agree at
   the default). Each removal is a ban, an unban and a message. Baseline: the configured rate
   itself. Goal: at least 0.9 of it, with every 429 waited out and every removal done.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from telepay.clock import SystemClock
from telepay.models import Channel, ChannelStatus, Job, JobState
from telepay.models.engine import make_session_factory
from telepay_sandbox.database import scratch_database
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay.services.lifecycle import EXPIRE_JOB, ExpirySweep

TOKEN = "606:bench-expiry"
BOT = "TelePayBenchBot"

_DUE_SELECT = ("SELECT id FROM subscriptions WHERE status = 'active' AND expires_at <= now() "
               "ORDER BY expires_at LIMIT {batch} FOR UPDATE SKIP LOCKED")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--channels", type=int, default=10, help="closed channels the due subscribers are in")
    parser.add_argument("--rate", type=float, default=30.0, help="the sandbox's messages per second")
    args = parser.parse_args(argv)
    with scratch_database("telepay_bench") as database_url:
        return _measure(database_url, args)


def _measure(database_url: str, args) -> dict:
    engine = create_engine(database_url, pool_size=4)
    limits = RateLimits(global_per_second=args.rate, global_burst=max(1, int(args.rate)))
    figures: dict = {}
    try:
        with TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=limits) as telegram:
            _populate(engine, telegram, args)
            figures.update(_query(engine, args))
            figures.update(_removals(engine, telegram, database_url, args))
    finally:
        engine.dispose()
    print(f"expiry: {args.subscriptions:,} subscriptions, {args.due:,} due, batches of {args.batch}")
    print(f"  due SELECT, partial index    {figures['index_select_ms']:8.2f} ms   "
          f"(sequential scan baseline {figures['seqscan_select_ms']:8.2f} ms, ratio {figures['select_ratio']:.3f})")
    print(f"  sweep batch (claim+mark+queue) median {figures['batch_ms_median']:6.2f} ms, "
          f"max {figures['batch_ms_max']:6.2f} ms   (goal < 50 ms)")
    print(f"  removals {figures['removals']:,} in {figures['seconds']:.1f} s = {figures['removals_per_second']:.2f}/s "
          f"against {args.rate:g}/s configured: ratio {figures['rate_ratio']:.3f} (goal >= 0.9)")
    print(f"  429s answered {figures['answered_429']}, handled by retry; removals not done {figures['not_done']}")
    return figures


def _populate(engine, telegram: TelegramSandbox, args) -> None:
    """Channels (real sandbox chats for the due ones), then every subscription in two statements."""
    session_factory = make_session_factory(engine)
    owner = telegram.create_user("Owner")
    with session_factory.begin() as session:
        channels = []
        for n in range(args.channels):
            closed = telegram.create_channel(f"Closed {n}", creator=owner)
            telegram.add_admin(closed, telegram.bot)
            channel = Channel(key=f"bench{n:05d}", owner_user_id=owner.id, open_chat_id=-(2 * 10**12 + n),
                              closed_chat_id=closed.id, open_title=f"Open {n}", closed_title=f"Closed {n}",
                              status=ChannelStatus.ACTIVE)
            session.add(channel)
            channels.append(channel)
        session.flush()
        channel_ids = [channel.id for channel in channels]
    # The due subscribers exist in the sandbox and have started the bot (so it may write to
    # them); the world is set directly, as thousands of /start updates are not what is measured.
    world = telegram._world
    with world.lock:
        users = [world.add_user(f"Due {n}", started_bot=True).id for n in range(args.due)]
    filler = args.subscriptions - args.due
    with engine.begin() as connection:
        # Not due: between 10 and 400 days away, so no reminder falls due during the run either.
        connection.execute(text(
            "INSERT INTO subscriptions (channel_id, user_id, status, started_at, expires_at, updated_at) "
            "SELECT CAST(:first AS bigint) + mod(g, CAST(:count AS bigint)), 9000000000 + g, 'active', "
            "now() - interval '30 days', now() + interval '10 days' + mod(g, 390) * interval '1 day' "
            "+ mod(g, 86400) * interval '1 second', now() FROM generate_series(1, CAST(:filler AS bigint)) AS g"),
            {"first": channel_ids[0], "count": len(channel_ids), "filler": filler})
        connection.execute(text(
            "INSERT INTO subscriptions (channel_id, user_id, status, started_at, expires_at, updated_at) "
            "SELECT c, u, 'active', now() - interval '30 days', now() - n * interval '1 second', now() "
            "FROM unnest(CAST(:channels AS bigint[]), CAST(:users AS bigint[])) WITH ORDINALITY AS t(c, u, n)"),
            {"channels": [channel_ids[n % len(channel_ids)] for n in range(args.due)], "users": users})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE subscriptions"))


def _explain_ms(engine, statement: str, *settings: str) -> tuple[float, str]:
    """Execution time by EXPLAIN ANALYZE, and the plan's text; rolled back (it locks rows)."""
    with engine.connect() as connection:
        for setting in settings:
            connection.execute(text(setting))
        lines = connection.execute(text("EXPLAIN (ANALYZE) " + statement)).scalars().all()
        connection.rollback()
    executed = next(line for line in lines if line.startswith("Execution Time"))
    return float(executed.split(":")[1].split()[0]), "\n".join(lines)


def _query(engine, args) -> dict:
    statement = _DUE_SELECT.format(batch=args.batch)
    indexed = [_explain_ms(engine, statement) for _ in range(5)]
    seqscan = [_explain_ms(engine, statement, "SET LOCAL enable_indexscan = off",
                           "SET LOCAL enable_bitmapscan = off") for _ in range(3)]
    index_ms = statistics.median(ms for ms, _ in indexed)
    seq_ms = statistics.median(ms for ms, _ in seqscan)

    sweep = ExpirySweep(make_session_factory(engine), SystemClock(), batch_size=args.batch)
    batches = []
    while True:
        started = time.perf_counter()
        claimed = sweep.expire_batch()
        batches.append((time.perf_counter() - started) * 1000)
        if claimed is None or claimed[0] < args.batch:
            break
    if "ix_subscriptions_due" not in indexed[0][1]:
        raise AssertionError("the due SELECT does not use ix_subscriptions_due:\n" + indexed[0][1])
    return {"index_select_ms": index_ms, "seqscan_select_ms": seq_ms, "select_ratio": index_ms / seq_ms,
            "batch_ms_median": statistics.median(batches), "batch_ms_max": max(batches), "batches": len(batches)}


def _removals(engine, telegram: TelegramSandbox, database_url: str, args) -> dict:
    """`telepay run` works off the queued removals; the rate is read from the sandbox's log."""
    with tempfile.TemporaryDirectory(prefix="bench-expiry-") as tmp:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT,
                          data_dir=Path(tmp), database_url=database_url,
                          extra={"SWEEP_INTERVAL_SECONDS": "1", "LOG_LEVEL": "WARNING"})
        process = TelepayProcess(env, Path(tmp) / "telepay.log")
        mark = telegram.mark()
        process.start()
        try:
            deadline = time.monotonic() + 60 + 3 * args.due / args.rate
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    left = connection.execute(select(func.count()).select_from(Job).where(
                        Job.kind == EXPIRE_JOB, Job.state != JobState.DONE)).scalar_one()
                if left == 0:
                    break
                time.sleep(0.5)
        finally:
            process.stop()
    calls = telegram.calls[mark:]
    bans = [call for call in calls if call.method == "banChatMember"]
    told = [call for call in calls if call.method == "sendMessage" and call.ok and "has ended" in call.result["text"]]
    seconds = (max(call.time for call in told) - min(call.time for call in bans)) if told and bans else float("nan")
    rate = len(told) / seconds if told else 0.0
    return {"removals": len(told), "seconds": seconds, "removals_per_second": rate, "rate_ratio": rate / args.rate,
            "answered_429": sum(call.status == 429 for call in calls), "not_done": left,
            "unique_users_told": len({call.params.get("chat_id") for call in told})}


if __name__ == "__main__":
    main()
