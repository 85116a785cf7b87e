"""The lifecycle services wired as `telepay run` wires them (sweep, job queue, worker, a PTB bot
with the product's rate limiter) against the sandbox Telegram, on a `ManualClock` shared by
both, so tests move time forward instead of editing rows."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select, text
from telegram.ext import ExtBot

from telepay.bot.ratelimit import MessageRateLimiter

from telepay.clock import ManualClock
from telepay.models import Channel, ChannelStatus, Job, JobState, Subscription, Tier
from telepay_sandbox.telegram import ChatHandle, Person, RateLimits, TelegramSandbox
from telepay.services import lifecycle
from telepay.services.jobs import JobQueue
from telepay.services.registry import JOB_KINDS
from telepay.services.worker import Worker

TOKEN = "555:lifecycle-tests"
_keys = itertools.count(1)


class Rig:
    def __init__(self, session_factory, *, rate_limits: RateLimits | None = None, batch_size: int = 500,
                 grace: timedelta = timedelta(0), offsets=(timedelta(days=3), timedelta(days=1)),
                 admin_chat_ids=()):
        self.session_factory = session_factory
        self.clock = ManualClock()
        self.telegram = TelegramSandbox(token=TOKEN, bot_username="LifecycleBot", clock=self.clock,
                                        rate_limits=rate_limits or RateLimits.off()).start()
        self.jobs = JobQueue(session_factory, clock=self.clock, kinds=JOB_KINDS)
        self.sweep = lifecycle.ExpirySweep(session_factory, self.clock, batch_size=batch_size, grace=grace,
                                           reminder_offsets=offsets)
        self.admin_chat_ids = tuple(admin_chat_ids)

    def close(self) -> None:
        self.telegram.stop()

    # ---- the world -----------------------------------------------------------------------------

    def channel(self, name: str = "Paula") -> tuple[int, Person, ChatHandle]:
        """A live channel pair (bot is admin of both) with one tier; (channel id, owner, closed chat)."""
        owner = self.telegram.create_user(name)
        owner.command("start")
        open_chat = self.telegram.create_channel(f"{name} News", username=f"{name.lower()}_news", creator=owner)
        closed = self.telegram.create_channel(f"{name} VIP", creator=owner)
        self.telegram.add_admin(open_chat, self.telegram.bot)
        self.telegram.add_admin(closed, self.telegram.bot)
        with self.session_factory.begin() as session:
            channel = Channel(key=f"{name.lower()[:8]}{next(_keys):04d}", owner_user_id=owner.id,
                              open_chat_id=open_chat.id, closed_chat_id=closed.id, open_title=f"{name} News",
                              closed_title=f"{name} VIP", status=ChannelStatus.ACTIVE)
            channel.tiers.append(Tier(number=1, price_usd=5, days=30))
            session.add(channel)
            session.flush()
            return channel.id, owner, closed

    def member(self, channel_id: int, closed: ChatHandle, name: str, *, expires_in: timedelta,
               started_ago: timedelta = timedelta(days=30)) -> tuple[Person, int]:
        """Someone who started the bot, joined the closed channel, and holds a subscription."""
        person = self.telegram.create_user(name)
        person.command("start")
        self.telegram.set_member_status(closed, person, "member")
        now = self.clock.now()
        with self.session_factory.begin() as session:
            subscription = Subscription(channel_id=channel_id, user_id=person.id, started_at=now - started_ago,
                                        expires_at=now + expires_in, updated_at=now)
            session.add(subscription)
            session.flush()
            return person, subscription.id

    def subscription(self, subscription_id: int) -> Subscription:
        with self.session_factory() as session:
            return session.get(Subscription, subscription_id)

    def channel_row(self, channel_id: int) -> Channel:
        with self.session_factory() as session:
            return session.get(Channel, channel_id)

    def jobs_of(self, kind: str) -> list[Job]:
        with self.session_factory() as session:
            return list(session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))

    def renew(self, subscription_id: int, days: int) -> None:
        """What fulfilment does for a paid renewal: later of now and expiry, plus the days, active."""
        now = self.clock.now()
        with self.session_factory.begin() as session:
            session.execute(text(
                "UPDATE subscriptions SET status = 'active', updated_at = :now, "
                "expires_at = greatest(:now, expires_at) + make_interval(days => :days) WHERE id = :id"),
                {"now": now, "days": days, "id": subscription_id})

    # ---- running it ----------------------------------------------------------------------------

    def sweep_and_work(self, timeout: float = 30) -> lifecycle.SweepResult:
        """One sweep, then the worker until no job is due (by the manual clock)."""
        result = self.sweep.run_once()
        self.work(timeout)
        return result

    def work(self, timeout: float = 30) -> None:
        asyncio.run(asyncio.wait_for(self._work(), timeout))

    def _due_jobs(self) -> int:
        now = self.clock.now()
        with self.session_factory() as session:
            return len(session.scalars(select(Job.id).where(or_(
                Job.state == JobState.RUNNING, (Job.state == JobState.QUEUED) & (Job.run_at <= now)))).all())

    async def _work(self) -> None:
        from telepay.services.messages import ALERT_JOB, DIRECT_JOB, DirectMessenger, OperatorAlerter
        from telepay.services.notifications import NOTIFY_JOB, OwnerNotifier

        bot = ExtBot(TOKEN, base_url=self.telegram.base_url, rate_limiter=MessageRateLimiter(max_retries=3))
        async with bot:
            handlers = {
                lifecycle.EXPIRE_JOB: lifecycle.Remover(self.session_factory, bot, self.jobs, self.clock),
                lifecycle.REMIND_JOB: lifecycle.Reminder(self.session_factory, bot, self.clock),
                NOTIFY_JOB: OwnerNotifier(self.session_factory, bot),
                DIRECT_JOB: DirectMessenger(self.session_factory, bot),
                ALERT_JOB: OperatorAlerter(self.session_factory, self.jobs, self.admin_chat_ids),
            }
            worker = Worker(self.jobs, handlers, poll_seconds=0.05)
            worker.start()
            try:
                while await asyncio.to_thread(self._due_jobs):
                    await asyncio.sleep(0.05)
            finally:
                await worker.stop()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)
