"""The end of a subscription through the running `telepay run` and the sandbox Telegram: the sweep
(every second here) removes whoever ran out and tells them, with a Renew button that leads into
the tier invoice flow; reminders go out once; a user who blocked the bot is removed in silence;
a channel where the bot lost its rights is paused, and its owner and the operators are told."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from telepay.models import Channel, ChannelStatus, Subscription, SubscriptionStatus, Tier, TimerRun
from telepay_sandbox.database import empty_tables
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay.services.lifecycle import TIMER_NAME
from tests.bot.world import TIMEOUT, until

TOKEN = "333:lifecycle-e2e"
BOT = "TelePayLifecycleE2E"


class World:
    def __init__(self, database_url: str, tmp):
        self.telegram = TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()).start()
        self.nowpayments = NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret").start()
        self.operator = self.telegram.create_user("Olga the operator")
        self.operator.command("start")
        env = sandbox_env(telegram_base_url=self.telegram.base_url, token=TOKEN, bot_username=BOT, data_dir=tmp,
                          database_url=database_url, nowpayments_base_url=self.nowpayments.base_url,
                          extra={"SWEEP_INTERVAL_SECONDS": "1", "REMINDER_OFFSETS": "1d",
                                 "ADMIN_CHAT_IDS": str(self.operator.id)})
        self.engine = create_engine(database_url)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.process = TelepayProcess(env, tmp / "telepay.log")
        self.process.start()

    def close(self) -> None:
        try:
            self.process.kill()
        finally:
            self.telegram.stop()
            self.nowpayments.stop()
            empty_tables(self.engine)
            self.engine.dispose()

    def channel(self, name: str):
        """A live pair with one tier, the bot admin of both: (channel id, key, owner, closed chat)."""
        owner = self.telegram.create_user(name)
        owner.command("start")
        owner.wait_for_message(lambda m: "Welcome" in m.text, timeout=TIMEOUT)
        open_chat = self.telegram.create_channel(f"{name} News", username=f"{name.lower()}_news", creator=owner)
        closed = self.telegram.create_channel(f"{name} VIP", creator=owner)
        self.telegram.add_admin(open_chat, self.telegram.bot)
        self.telegram.add_admin(closed, self.telegram.bot)
        with self.session_factory.begin() as session:
            channel = Channel(key=f"{name.lower()}key1", owner_user_id=owner.id, open_chat_id=open_chat.id,
                              closed_chat_id=closed.id, open_title=f"{name} News", closed_title=f"{name} VIP",
                              status=ChannelStatus.ACTIVE,
                              next_post_at=datetime.now(timezone.utc) + timedelta(days=1))
            channel.tiers.append(Tier(number=1, price_usd=5, days=30))
            session.add(channel)
            session.flush()
            return channel.id, channel.key, owner, closed

    def member(self, channel_id: int, closed, name: str, *, expires_in: timedelta):
        person = self.telegram.create_user(name)
        person.command("start")
        person.wait_for_message(lambda m: "Welcome" in m.text, timeout=TIMEOUT)
        self.telegram.set_member_status(closed, person, "member")
        now = datetime.now(timezone.utc)
        with self.session_factory.begin() as session:
            subscription = Subscription(channel_id=channel_id, user_id=person.id, started_at=now - timedelta(days=10),
                                        expires_at=now + expires_in, updated_at=now)
            session.add(subscription)
            session.flush()
            return person, subscription.id

    def status(self, subscription_id: int) -> SubscriptionStatus:
        with self.session_factory() as session:
            return session.get(Subscription, subscription_id).status

    def sweeps_started(self) -> datetime | None:
        with self.session_factory() as session:
            return session.scalars(select(TimerRun.last_started_at).where(TimerRun.name == TIMER_NAME)).first()


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = World(database_url, tmp_path_factory.mktemp("lifecycle"))
    yield running
    running.close()
    assert running.telegram.errors == []


def test_an_expired_member_is_removed_told_and_can_renew_through_the_invoice_flow(world):
    channel_id, key, _, closed = world.channel("Paula")
    person, subscription_id = world.member(channel_id, closed, "Ann", expires_in=-timedelta(minutes=1))

    ended = person.wait_for_message(lambda m: "has ended" in m.text, timeout=TIMEOUT)
    assert person.status_in(closed) == "left"  # removed, not banned: a new invite will work
    assert world.status(subscription_id) == SubscriptionStatus.EXPIRED
    assert ended.buttons == [{"text": "🔄 Renew", "callback_data": f"buy:{key}"}]

    person.press(ended, text="🔄 Renew")
    plans = person.wait_for_message(lambda m: "pick a plan" in m.text, timeout=TIMEOUT)
    assert [b["text"] for b in plans.buttons] == [
        "⭐ 385 Stars · 30 days", "🔁 385 Stars every 30 days (auto-renew)", "$5.00 · 30 days"]
    person.press(plans, text="$5.00 · 30 days")
    invoice = person.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
    assert "$5.00 for 30 days of “Paula VIP”" in invoice.text


def test_a_reminder_goes_out_once_and_its_renew_button_opens_the_plans(world):
    channel_id, _, _, closed = world.channel("Rita")
    person, subscription_id = world.member(channel_id, closed, "Ben", expires_in=timedelta(hours=20))

    reminder = person.wait_for_message(lambda m: "ends in" in m.text, timeout=TIMEOUT)
    assert "ends in 20 hours" in reminder.text
    seen = world.sweeps_started()
    until(lambda: world.sweeps_started() > seen + timedelta(seconds=1), what="two more sweeps")
    assert len([m for m in person.messages() if "ends in" in m.text]) == 1
    assert world.status(subscription_id) == SubscriptionStatus.ACTIVE and person.status_in(closed) == "member"

    person.press(reminder, text="🔄 Renew")
    assert person.wait_for_message(lambda m: "pick a plan" in m.text, timeout=TIMEOUT).buttons


def test_a_member_who_blocked_the_bot_is_removed_without_a_message(world):
    channel_id, _, _, closed = world.channel("Bea")
    person, subscription_id = world.member(channel_id, closed, "Cat", expires_in=timedelta(seconds=2))
    person.block_bot()
    until(lambda: person.status_in(closed) == "left", what="removal")
    assert world.status(subscription_id) == SubscriptionStatus.EXPIRED
    assert [m.text for m in person.messages() if "has ended" in m.text] == []


def test_lost_rights_are_reported_to_owner_and_operators_and_the_member_is_kept_for_later(world):
    channel_id, _, owner, closed = world.channel("Lena")
    world.telegram.set_member_status(closed, world.telegram.bot, "member")  # the owner demoted the bot
    person, _ = world.member(channel_id, closed, "Dan", expires_in=-timedelta(minutes=1))

    # The demotion itself (my_chat_member) pauses the pair, before any removal fails.
    told = owner.wait_for_message(lambda m: "is paused" in m.text, timeout=TIMEOUT)
    assert "Lena VIP" in told.text and "ban users" in told.text
    alert = world.operator.wait_for_message(lambda m: "paused" in m.text, timeout=TIMEOUT)
    assert f"Channel {channel_id}" in alert.text
    with world.session_factory() as session:
        assert session.get(Channel, channel_id).status == ChannelStatus.LOST_RIGHTS
    assert person.status_in(closed) == "member" and not [m for m in person.messages() if "has ended" in m.text]
