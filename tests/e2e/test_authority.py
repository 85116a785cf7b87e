"""Issue 13 through the real `telepay run`: each finding's attack replayed against the sandboxes,
and what it does now. (Payouts are not run in this world: no chain. "A payout released" is its
`payout.run` job being queued; that the runner itself holds an undelivered share is shown in
tests/services/test_delivery.py.)"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from telepay.models import AuditLog, Channel, ChannelStatus, InviteStatus, Invoice, Job, Payment
from telepay.services.delivery import delivery_queue
from tests.bot.world import BOT, TIMEOUT, World, until


class AuthorityWorld(World):
    """The bot's e2e world, plus an operator in ADMIN_CHAT_IDS."""

    def __init__(self, database_url, tmp):
        super().__init__(database_url, tmp)
        self.operator = self.telegram.create_user("Opal", username="opal_ops")
        self.process.env = {**self.process.env, "ADMIN_CHAT_IDS": str(self.operator.id)}
        self.restart()
        self.operator.send("/start")
        self.operator.wait_for_message(timeout=TIMEOUT)

    def shop(self, name: str):
        """A live pair (tier 1: $5 for 30 days): (owner, key, open chat, closed chat, channel id)."""
        owner, open_chat, closed_chat = self.owner_with_pair(name)
        form = self.register(owner, open_chat, closed_chat)
        self.set_up(owner, form)
        with self.session_factory() as session:
            channel = session.scalars(select(Channel).where(Channel.open_chat_id == open_chat.id)).one()
        until(lambda: self.bot_posts(open_chat), what="first post")
        return owner, channel.key, open_chat, closed_chat, channel.id

    def invoice_for(self, buyer, key: str) -> Invoice:
        buyer.open_deep_link(f"https://t.me/{BOT}?start={key}-1")
        card = buyer.wait_for_message(lambda m: "Subscription to" in m.text, timeout=TIMEOUT)
        buyer.press(card, text="💳 Pay $5.00")
        buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
        with self.session_factory() as session:
            return session.scalars(select(Invoice).where(Invoice.buyer_user_id == buyer.id)
                                   .order_by(Invoice.created_at.desc()).limit(1)).one()

    def payout_jobs(self, invoice_ids) -> list[Job]:
        with self.session_factory() as session:
            payout_ids = list(session.scalars(select(Payment.payout_id).where(Payment.invoice_id.in_(invoice_ids))))
            return list(session.scalars(select(Job).where(
                Job.kind == "payout.run", Job.payload["payout_id"].as_integer().in_(payout_ids))))

    def queue(self):
        with self.session_factory() as session:
            return delivery_queue(session)


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = AuthorityWorld(database_url, tmp_path_factory.mktemp("authority"))
    yield running
    running.close()
    assert running.telegram.errors == []


def test_finding_1_no_buyer_pays_for_nothing(world):
    """The attack: the owner removes the bot's "invite users" right after going live; two sales
    went through, both owner payouts started, and both buyers stayed outside, unheard. Now the
    pair pauses at once, the buyers are told and queued, no payout starts; when the right is back
    the buyers are let in, and only then are the payouts released."""
    owner, key, _, closed_chat, channel_id = world.shop("Nora")
    buyers = [world.telegram.create_user(f"Payer {n}") for n in range(2)]
    invoices = [world.invoice_for(buyer, key) for buyer in buyers]  # opened while live

    world.telegram.add_admin(closed_chat, world.telegram.bot, can_invite_users=False)
    told = owner.wait_for_message(lambda m: "is paused" in m.text, timeout=TIMEOUT)
    assert "Invite users via link" in told.text
    world.operator.wait_for_message(lambda m: f"Channel {channel_id}" in m.text and "paused" in m.text,
                                    timeout=TIMEOUT)
    latecomer = world.telegram.create_user("Latecomer")
    latecomer.open_deep_link(f"https://t.me/{BOT}?start={key}-1")
    assert "not taking payments" in latecomer.wait_for_message(timeout=TIMEOUT).text

    for invoice in invoices:
        world.nowpayments.pay(invoice.provider_invoice_id)
    for buyer in buyers:
        note = buyer.wait_for_message(lambda m: "can't let you in just yet" in m.text, timeout=TIMEOUT)
        assert "refund" in note.text
    queued = until(lambda: len(world.queue()) == 2 and world.queue(), what="both buyers queued")
    assert {w.user_id for w in queued} == {b.id for b in buyers}
    assert {w.status for w in queued} == {InviteStatus.WAITING} and {w.channel_id for w in queued} == {channel_id}
    shown = world.process.telepay("subscribers", "waiting")  # what an operator sees
    assert shown.returncode == 0, shown.stderr
    assert all(f"user={b.id}" in shown.stdout for b in buyers) and shown.stdout.count("waiting") == 2
    # ... and so do status (as a check) and the metrics an alert rule reads.
    scrape = f"http://127.0.0.1:{world.process.env['METRICS_PORT']}/metrics"

    def scraped_with_queue() -> str | None:
        text = httpx.get(scrape, timeout=10).text
        return text if 'telepay_delivery_queue{state="waiting"} 2.0' in text else None

    metrics = until(scraped_with_queue, what="queue in metrics")
    assert 'telepay_check_level{check="delivery_queue"} 1.0' in metrics
    assert world.payout_jobs([i.id for i in invoices]) == []  # zero payouts started
    assert all(b.status_in(closed_chat) == "left" for b in buyers)

    world.telegram.add_admin(closed_chat, world.telegram.bot)  # the owner gives the right back
    for buyer in buyers:
        invite = buyer.wait_for_message(lambda m: "Tap the button below to join" in m.text, timeout=TIMEOUT)
        assert buyer.join(invite.buttons[0]["url"]) == "requested"
        until(lambda: buyer.status_in(closed_chat) == "member", what="buyer let in")
    assert world.queue() == []
    released = until(lambda: len(world.payout_jobs([i.id for i in invoices])) == 2
                     and world.payout_jobs([i.id for i in invoices]), what="payouts released")
    assert all(":delivered:" in job.dedupe_key for job in released)
    with world.session_factory() as session:
        assert session.get(Channel, channel_id).status == ChannelStatus.ACTIVE
        assert all(session.get(Invoice, i.id).access_delivered_at is not None for i in invoices)
    owner.wait_for_message(lambda m: "live again" in m.text, timeout=TIMEOUT)


def test_finding_4_get_my_invite_and_pay_are_limited_per_person(world):
    """The attack: 30 presses of "Get my invite" made 30 links; 40 invoices in 14 s. Now each
    person gets a few, then a polite "please wait"."""
    _, key, _, closed_chat, _ = world.shop("Rhea")
    buyer = world.telegram.create_user("Presser")
    invoice = world.invoice_for(buyer, key)
    world.nowpayments.pay(invoice.provider_invoice_id)
    buyer.wait_for_message(lambda m: "Tap the button below to join" in m.text, timeout=TIMEOUT)
    buyer.send("/mysubs")
    subs = buyer.wait_for_message(lambda m: "Your subscriptions" in m.text, timeout=TIMEOUT)
    label = next(b["text"] for b in subs.buttons if b["text"].startswith("🔑"))
    before = len(world.telegram.invite_links(closed_chat))
    answers = [buyer.press(subs, text=label).wait_for_answer(timeout=TIMEOUT) for _ in range(30)]
    refused = [a for a in answers if "Please wait" in (a.get("text") or "")]
    assert len(refused) >= 26
    assert len(world.telegram.invite_links(closed_chat)) - before <= 3

    card_owner = world.telegram.create_user("Clicker")
    card_owner.open_deep_link(f"https://t.me/{BOT}?start={key}-1")
    card = card_owner.wait_for_message(lambda m: "Subscription to" in m.text, timeout=TIMEOUT)
    answers = [card_owner.press(card, text="💳 Pay $5.00").wait_for_answer(timeout=TIMEOUT) for _ in range(12)]
    assert sum("Please wait" in (a.get("text") or "") for a in answers) >= 7
    with world.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Invoice)
                              .where(Invoice.buyer_user_id == card_owner.id)) == 1


def test_finding_7_forged_tier_4_buttons_leave_the_form_saveable(world):
    """The attack: forged `cfg:<id>:t:4:...` buttons put a tier 4 in the draft, and "Save all
    changes" failed until "Discard". Now the forged button records nothing."""
    owner, open_chat, closed_chat = world.owner_with_pair("Tess")
    form = world.register(owner, open_chat, closed_chat)
    with world.session_factory() as session:
        cid = session.scalars(select(Channel.id).where(Channel.open_chat_id == open_chat.id)).one()
    for forged in (f"cfg:{cid}:t:4:price", f"cfg:{cid}:t:4", f"cfg:{cid}:t:0:days", f"cfg:{cid}:t:4:del"):
        assert "expired" in owner.press_forged(form, forged).wait_for_answer(timeout=TIMEOUT)["text"]
    owner.send("250")  # had a forged "price of tier 4" question been asked, this would answer it
    assert "didn't catch that" in owner.wait_for_message(timeout=TIMEOUT).text
    world.set_up(owner, form)
    with world.session_factory() as session:
        channel = session.get(Channel, cid)
        assert [t.number for t in channel.tiers] == [1] and channel.status == ChannelStatus.ACTIVE


def test_finding_3_sale_notices_go_only_where_the_owner_is_admin_and_the_bot_may_post(world):
    """The attack: "Sale notifications → to another chat" took any chat the bot could see, and a
    $1 self-purchase put the attacker's text into a victim's channel. Now the target must be a
    chat the owner administers and the bot can post in, checked when set and before each use."""
    owner, key, _, _, channel_id = world.shop("Mala")
    victim_owner = world.telegram.create_user("Victim")
    victim = world.telegram.create_channel("Victim Channel", creator=victim_owner)
    world.telegram.add_admin(victim, world.telegram.bot)  # the bot serves the victim too
    own_group = world.telegram.create_supergroup("Mala sales")  # Mala is an admin there, not its creator
    world.telegram.add_admin(own_group, owner)
    world.telegram.set_member_status(own_group, world.telegram.bot, "member")

    view = world.menu(owner)
    view = world.press(owner, view, "📋 My channels", expect="Your channels")
    view = world.press(owner, view, world.button(view, "✅"), expect="Status")
    form = world.press(owner, view, "⚙️ Setup", expect="Tiers", new_message=False)
    world.press(owner, form, "🔔 Notifications", expect="and where")
    world.press(owner, form, "To another chat…", expect="group or channel for sale notifications")
    owner.send(str(victim.id))
    refusal = owner.wait_for_message(timeout=TIMEOUT)
    assert "must be an administrator of that chat" in refusal.text
    owner.send(str(own_group.id))
    form = owner.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=TIMEOUT)
    assert f"to chat {own_group.id}" in form.text
    world.press(owner, form, "💾 Save all changes", expect="All changes saved")

    # Later the bot may no longer post there (here: the owner is demoted in that group).
    world.telegram.set_member_status(own_group, owner, "member")
    buyer = world.telegram.create_user("Self-buyer")
    world.nowpayments.pay(world.invoice_for(buyer, key).provider_invoice_id)
    notice = owner.wait_for_message(lambda m: "New subscription" in m.text, timeout=TIMEOUT)
    assert f"meant for your notification chat {own_group.id}" in notice.text
    assert [m for m in own_group.messages() if m.from_bot] == []
    assert [m for m in victim.messages() if m.from_bot] == []


def test_finding_2_ownership_follows_telegram_and_the_creator_takes_over(world):
    """The attack: a co-admin registers the creator's pair with their own wallet; removed as admin,
    they kept the payouts, "Post now" and the figures, and the creator was refused. Now the
    co-admin is refused and their payouts held (operators told), and the creator takes over."""
    creator = world.telegram.create_user("Cora", username="cora")
    mallory = world.telegram.create_user("Mallory", username="mallory")
    open_chat = world.telegram.create_channel("Cora News", username="cora_news", creator=creator)
    closed_chat = world.telegram.create_channel("Cora VIP", creator=creator)
    for chat in (open_chat, closed_chat):
        world.telegram.add_admin(chat, world.telegram.bot)
        world.telegram.add_admin(chat, mallory)
    form = world.register(mallory, open_chat, closed_chat)
    world.set_up(mallory, form)
    with world.session_factory() as session:
        channel = session.scalars(select(Channel).where(Channel.open_chat_id == open_chat.id)).one()
    assert channel.owner_user_id == mallory.id and channel.status == ChannelStatus.ACTIVE

    for chat in (open_chat, closed_chat):  # the creator removes Mallory as admin
        world.telegram.set_member_status(chat, mallory, "member")
    view = world.menu(mallory)
    view = world.press(mallory, view, "📋 My channels", expect="Your channels")
    view = world.press(mallory, view, world.button(view, "✅"), expect="Status")
    for button in ("📣 Post now", "📊 Summary", "⚙️ Setup"):
        answer = mallory.press(view, text=button).wait_for_answer(timeout=TIMEOUT)
        assert "no longer lists you" in answer["text"]
    world.operator.wait_for_message(lambda m: "no longer an admin" in m.text and f"Channel {channel.id}" in m.text,
                                    timeout=TIMEOUT)
    with world.session_factory() as session:
        assert session.get(Channel, channel.id).owner_lost_at is not None  # her payouts are held

    # The creator registers the same pair: it becomes hers.
    menu = world.menu(creator)
    world.press(creator, menu, "➕ Add channels", expect="send me the open channel")
    creator.send("@" + open_chat.username)
    creator.wait_for_message(lambda m: "Open channel" in m.text, timeout=TIMEOUT)
    creator.forward_to_bot(closed_chat.post("For members"))
    creator.wait_for_message(lambda m: "the pair is yours now" in m.text, timeout=TIMEOUT)
    creator.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=TIMEOUT)
    mallory.wait_for_message(lambda m: "was taken over" in m.text, timeout=TIMEOUT)
    with world.session_factory() as session:
        taken = session.get(Channel, channel.id)
        assert (taken.owner_user_id, taken.payout_address, taken.status) == (creator.id, None, ChannelStatus.SETUP)
        audit = session.scalars(select(AuditLog).where(AuditLog.channel_id == channel.id,
                                                       AuditLog.action == "owner.takeover")).one()
        assert audit.before["owner_user_id"] == mallory.id and audit.after["owner_user_id"] == creator.id
