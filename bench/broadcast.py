"""Posting to many channels through `telepay run`, against the rate the sandbox Telegram allows.

`--channels` registered, configured channel pairs are inserted directly (the bot is an admin of
every sandbox chat), then one `broadcast.post` job per channel is queued at once, as the repost
timer or the trigger webhook would. Each job posts twice (open and closed channel), so
2 x channels messages go out. The sandbox enforces Telegram's numbers: 30 messages/s overall
with a burst of 30, 20 per minute per channel. The baseline is what those limits allow for the
same messages, `(messages - burst) / rate` seconds, so the ratio is allowed time / taken time
(1.0 = every second used at the allowed rate). Checked: every chat got exactly its one post,
no job is left unfinished or dead, and every 429 the sandbox answered was followed by a
successful send to the same chat. Goal: ratio >= 0.9, nothing lost.
"""

from __future__ import annotations

import argparse
from decimal import Decimal

from sqlalchemy import create_engine, func, select

from bench.common import load_average, running_telepay
from telepay.models import BroadcastPost, Channel, ChannelStatus, Job, Tier
from telepay.models.engine import make_session_factory
from telepay_sandbox.database import scratch_database
from telepay_sandbox.telegram import ChatHandle, RateLimits, TelegramSandbox
from telepay_sandbox.waiting import until
from telepay.services.broadcasts import POST_JOB
from telepay.services.jobs import JobQueue

TOKEN = "7100000002:bench-broadcast-token"
BOT = "TelePayBenchBroadcastBot"
GOAL = 0.9


def _world(telegram: TelegramSandbox, session_factory, channels: int) -> tuple[list[int], list[ChatHandle]]:
    """`channels` pairs where the bot is an admin, registered and active; their ids and chats."""
    owner = telegram.create_user("Bench Owner", username="bench_owner")
    chats = []
    with session_factory.begin() as session:
        rows = []
        for n in range(channels):
            open_chat = telegram.create_channel(f"Bench {n} News", creator=owner)
            closed_chat = telegram.create_channel(f"Bench {n} VIP", creator=owner)
            telegram.add_admin(open_chat, telegram.bot)
            telegram.add_admin(closed_chat, telegram.bot)
            chats += [open_chat, closed_chat]
            channel = Channel(key=f"bc{n:08d}", owner_user_id=owner.id, open_chat_id=open_chat.id,
                              closed_chat_id=closed_chat.id, open_title=f"Bench {n} News",
                              closed_title=f"Bench {n} VIP", status=ChannelStatus.ACTIVE,
                              payout_currency="usdt", payout_network="trx",
                              payout_address="TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
            channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30))
            rows.append(channel)
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows], chats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--channels", type=int, default=1000, help="channel pairs (2 posts each)")
    parser.add_argument("--rate", type=float, default=30.0, help="sandbox's overall messages/s")
    parser.add_argument("--burst", type=int, default=30, help="sandbox's overall burst")
    args = parser.parse_args(argv)
    limits = RateLimits(global_per_second=args.rate, global_burst=args.burst)

    with scratch_database("telepay_bench") as database_url:
        engine = create_engine(database_url)
        session_factory = make_session_factory(engine)
        try:
            with TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=limits) as telegram:
                ids, chats = _world(telegram, session_factory, args.channels)
                with running_telepay(database_url, telegram) as process:
                    # The bot first reads the 2 x channels "you are an admin" updates; let it.
                    until(lambda: not telegram.pending_updates, "admin updates read", timeout=120, interval=0.2)
                    mark = telegram.mark()
                    load_before = load_average()
                    with session_factory.begin() as session:
                        queue = JobQueue(session_factory)
                        for channel_id in ids:
                            queue.enqueue(session, POST_JOB, {"channel_id": channel_id, "reason": "bench"})
                    expected = 2 * args.channels
                    budget = 60 + 3 * expected / args.rate
                    until(lambda: _unfinished(session_factory) == 0, "every broadcast job finished",
                          timeout=budget, interval=0.2)
                    load_after = load_average()
                    log = process.log()
                calls = [c for c in telegram.calls[mark:] if c.method == "sendMessage"]
                posts_per_chat = {chat.id: sum(1 for m in telegram.chat_messages(chat) if m.from_bot)
                                  for chat in chats}
                errors = telegram.errors
            with session_factory() as session:
                counted = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
                states = {str(state): n for state, n in counted}
                recorded = session.scalar(select(func.count()).select_from(BroadcastPost))
        finally:
            engine.dispose()

    ok = [c for c in calls if c.status == 200]
    limited = [c for c in calls if c.status == 429]
    other = [c for c in calls if c.status not in (200, 429)]
    retried = sum(1 for c in limited if any(o.time > c.time and str(o.params["chat_id"]) == str(c.params["chat_id"])
                                            for o in ok))
    seconds = max(c.time for c in ok) - min(c.time for c in calls)
    achieved = (len(ok) - 1) / seconds if seconds > 0 else float("inf")
    allowed_seconds = max(0, len(ok) - args.burst) / args.rate
    ratio = allowed_seconds / seconds if seconds > 0 else 0.0
    lost = sum(1 for count in posts_per_chat.values() if count != 1)
    print(f"broadcast: {args.channels} channel pairs, {expected} posts; sandbox limits {args.rate:g}/s overall "
          f"(burst {args.burst}), 20/min per chat; load average {load_before} -> {load_after}")
    print(f"  allowed: {args.rate:.1f} msg/s   -> {allowed_seconds:6.1f} s for {len(ok)} posts after the burst")
    print(f"  telepay: {achieved:6.1f} msg/s   -> {seconds:6.1f} s, first send to last post")
    print(f"  429s answered {len(limited)}, of them followed by a successful send to the same chat {retried}; "
          f"other errors {len(other)}")
    print(f"  chats with exactly one post {len(posts_per_chat) - lost}/{len(posts_per_chat)}; posts recorded "
          f"{recorded}; jobs {states}")
    print(f"  ratio allowed time / taken time: {ratio:.2f} (goal >= {GOAL:.2f}) -> "
          f"{'MET' if ratio >= GOAL and lost == 0 else 'NOT MET'}")
    return {"posts": len(ok), "expected": expected, "lost": lost, "achieved_rate": achieved, "ratio": ratio,
            "seconds": seconds, "429s": len(limited), "retried_429s": retried, "other_errors": len(other),
            "jobs": states, "sandbox_errors": errors,
            "rate_limit_log_lines": log.count("Rate limit hit")}


def _unfinished(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Job).where(
            Job.kind == POST_JOB, Job.state.in_(["queued", "running"])))


if __name__ == "__main__":
    main()
