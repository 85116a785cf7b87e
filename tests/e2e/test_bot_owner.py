"""Channel owners through the real process and the sandbox Telegram: register a pair, set it up,
see the posts, "Post now" with its cooldown, and every way registration is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from telepay.models import AuditLog, BroadcastPost, Channel, ChannelStatus, Tier
from tests.bot.world import BOT, TIMEOUT, World, until


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = World(database_url, tmp_path_factory.mktemp("bot-owner"))
    yield running
    running.close()
    assert running.telegram.errors == []


def test_owner_registers_sets_up_and_posts(world):
    owner, open_chat, closed_chat = world.owner_with_pair("Olivia")
    form = world.register(owner, open_chat, closed_chat)
    assert "not live yet" in form.text

    # A bad address is refused at once, with the network named.
    world.press(owner, form, world.button(form, "💱 Currency"), expect="Which currency")
    world.press(owner, form, "Tether USDT (TRC-20)", expect="Unsaved changes")
    world.press(owner, form, "👛 Address", expect="Send your payout address")
    owner.send("T-not-an-address")
    refusal = owner.wait_for_message(timeout=TIMEOUT)
    assert "is not a valid Tether USDT (TRC-20) address" in refusal.text
    form = world.press(owner, refusal, "« Back to the form", expect="Tiers")
    # The right shape locally, but ChangeNOW's check finds the EIP-55 checksum wrong.
    world.press(owner, form, "💱 Currency", expect="Which currency")
    world.press(owner, form, "Ether (Ethereum)", expect="Ether (Ethereum)")
    world.press(owner, form, "👛 Address", expect="Send your payout address")
    owner.send("0x52908400098527886E0F7030069857D2E4169EE7".replace("E0F", "e0F"))
    refusal = owner.wait_for_message(timeout=TIMEOUT)
    assert "Our exchange partner says" in refusal.text and "ETH network" in refusal.text
    assert any(call.path == "/v2/validate/address" for call in world.changenow.calls)
    owner.send("/cancel")
    owner.wait_for_message(lambda m: "Cancelled" in m.text, timeout=TIMEOUT)

    # The unsaved currency edit is still in the draft after leaving the form; discard it.
    form = world.menu(owner)
    form = world.press(owner, form, "📋 My channels", expect="Your channels")
    form = world.press(owner, form, world.button(form, "✅") if any(
        b.startswith("✅") for b in world.button_labels(form)) else world.button(form, "⚠️"), expect="Status")
    form = world.press(owner, form, "⚙️ Setup", expect="Unsaved changes")
    form = world.press(owner, form, "🗑 Discard", expect="Changes discarded")
    assert "Unsaved" not in form.text
    world.set_up(owner, form, price="5", days="30")
    notice = owner.wait_for_message(lambda m: "Security notice" in m.text, timeout=TIMEOUT)
    assert "TJRab" in notice.text

    with world.session_factory() as session:
        channel = session.scalars(select(Channel).where(Channel.open_chat_id == open_chat.id)).one()
        tiers = session.scalars(select(Tier).where(Tier.channel_id == channel.id)).all()
        actions = session.scalars(select(AuditLog.action).where(AuditLog.channel_id == channel.id)).all()
        change = session.scalars(select(AuditLog).where(AuditLog.action == "payout_address.change")).one()
    assert channel.status == ChannelStatus.ACTIVE
    assert [(t.number, str(t.price_usd), t.days) for t in tiers] == [(1, "5.00", 30)]
    assert sorted(actions) == ["payout_address.change", "settings.update"]
    assert change.before["address"] is None and change.after["address"] == channel.payout_address
    assert change.after["confirmed"] is True and change.actor_user_id == owner.id

    subscribe = until(lambda: world.bot_posts(open_chat), what="subscription post")[0]
    donate = until(lambda: world.bot_posts(closed_chat), what="donation post")[0]
    assert subscribe.buttons == [{"text": "$5.00 · 30 days", "url": f"https://t.me/{BOT}?start={channel.key}-1"}]
    assert donate.buttons == [{"text": "💙 Donate", "url": f"https://t.me/{BOT}?start={channel.key}-donate"}]

    # "Post now": new posts replace the old ones; a second press within 5 minutes is refused.
    view = world.menu(owner)
    view = world.press(owner, view, "📋 My channels", expect="Your channels")
    view = world.press(owner, view, world.button(view, "✅"), expect="Status")
    answer = owner.press(view, text="📣 Post now").wait_for_answer(timeout=TIMEOUT)
    assert "Posting now" in answer["text"]
    until(lambda: subscribe.deleted and donate.deleted, what="old posts deleted")
    fresh = until(lambda: world.bot_posts(open_chat), what="fresh post")
    assert len(fresh) == 1 and fresh[0] != subscribe and len(world.bot_posts(closed_chat)) == 1
    again = owner.press(view, text="📣 Post now").wait_for_answer(timeout=TIMEOUT)
    assert "less than 5 minutes ago" in again["text"] and again["show_alert"]
    with world.session_factory() as session:
        posts = session.scalars(select(BroadcastPost).where(BroadcastPost.channel_id == channel.id)).all()
    assert {(p.kind, p.message_id) for p in posts} == {
        ("subscribe", fresh[0].message_id), ("donate", world.bot_posts(closed_chat)[0].message_id)}

    summary = world.press(owner, view, "📊 Summary", expect="last 30 days")
    assert "Active subscribers: 0" in summary.text


def test_a_user_who_is_not_admin_of_both_channels_is_refused(world):
    mallory = world.telegram.create_user("Mallory", username="mallory")
    other, open_chat, closed_chat = world.owner_with_pair("Victor")
    world.telegram.add_admin(open_chat, mallory)  # admin of the open channel only
    menu = world.menu(mallory)
    world.press(mallory, menu, "➕ Add channels", expect="send me the open channel")
    mallory.send("@" + open_chat.username)
    mallory.wait_for_message(lambda m: "Open channel" in m.text, timeout=TIMEOUT)
    mallory.send(str(closed_chat.id))
    refusal = mallory.wait_for_message(timeout=TIMEOUT)
    assert "You are not the creator or an administrator of “Victor VIP”" in refusal.text


def test_a_bot_without_rights_is_told_exactly_what_is_missing(world):
    owner = world.telegram.create_user("Nina", username="nina")
    open_chat = world.telegram.create_channel("Nina News", username="nina_news", creator=owner)
    closed_chat = world.telegram.create_channel("Nina VIP", creator=owner)
    world.telegram.add_admin(closed_chat, world.telegram.bot, can_restrict_members=False, can_invite_users=False)
    menu = world.menu(owner)
    world.press(owner, menu, "➕ Add channels", expect="send me the open channel")
    owner.send("@nina_news")  # public, but the bot is not an admin there
    refusal = owner.wait_for_message(timeout=TIMEOUT)
    assert "I am not an administrator of “Nina News”" in refusal.text
    world.telegram.add_admin(open_chat, world.telegram.bot)
    owner.send("https://t.me/nina_news")
    owner.wait_for_message(lambda m: "Open channel" in m.text, timeout=TIMEOUT)
    owner.forward_to_bot(closed_chat.post("hi"))
    refusal = owner.wait_for_message(timeout=TIMEOUT)
    assert "I am missing: Invite users via link, Ban users" in refusal.text
    owner.send("@nobody_here_at_all")
    assert "I can't see the channel" in owner.wait_for_message(timeout=TIMEOUT).text


def test_a_channel_registered_by_someone_else_is_refused(world):
    first, open_chat, closed_chat = world.owner_with_pair("Rita")
    world.register(first, open_chat, closed_chat)
    second = world.telegram.create_user("Sam", username="sam")
    own_closed = world.telegram.create_channel("Sam VIP", creator=second)
    world.telegram.add_admin(own_closed, world.telegram.bot)
    world.telegram.add_admin(open_chat, second)
    menu = world.menu(second)
    world.press(second, menu, "➕ Add channels", expect="send me the open channel")
    second.send("@" + open_chat.username)
    second.wait_for_message(lambda m: "Open channel" in m.text, timeout=TIMEOUT)
    second.send(str(own_closed.id))
    refusal = second.wait_for_message(timeout=TIMEOUT)
    assert "already registered with TelePay by someone else" in refusal.text
    with world.session_factory() as session:
        assert session.scalars(select(Channel).where(Channel.owner_user_id == second.id)).all() == []


def test_a_bot_that_lost_its_rights_pauses_the_channel_and_tells_the_owner(world):
    owner, open_chat, closed_chat = world.owner_with_pair("Lena")
    form = world.register(owner, open_chat, closed_chat)
    world.set_up(owner, form)
    until(lambda: world.bot_posts(open_chat) and world.bot_posts(closed_chat), what="first posts")
    world.telegram.set_member_status(closed_chat, world.telegram.bot, "member")
    warning = owner.wait_for_message(lambda m: "is paused" in m.text, timeout=TIMEOUT)
    assert "Lena News" in warning.text and "admin in “Lena VIP”" in warning.text
    with world.session_factory() as session:
        channel = session.scalars(select(Channel).where(Channel.open_chat_id == open_chat.id)).one()
    assert channel.status == ChannelStatus.LOST_RIGHTS and "Lena VIP" in channel.status_reason


def test_finding_12_post_now_does_not_resume_a_pair_that_cannot_invite(world):
    """The attack: the owner removes only the bot's "invite users" right; "Post now" posted fine
    and marked the pair active again, so it sold access nobody could be given. Now the pair stays
    paused until every right is back, and then resumes by itself."""
    owner, open_chat, closed_chat = world.owner_with_pair("Ivy")
    form = world.register(owner, open_chat, closed_chat)
    world.set_up(owner, form)
    until(lambda: world.bot_posts(open_chat) and world.bot_posts(closed_chat), what="first posts")
    posts_before = len(world.bot_posts(open_chat))
    world.telegram.add_admin(closed_chat, world.telegram.bot, can_invite_users=False)
    owner.wait_for_message(lambda m: "is paused" in m.text and "Invite users via link" in m.text, timeout=TIMEOUT)

    view = world.menu(owner)
    view = world.press(owner, view, "📋 My channels", expect="Your channels")
    view = world.press(owner, view, world.button(view, "⚠️"), expect="Status")
    answer = owner.press(view, text="📣 Post now").wait_for_answer(timeout=TIMEOUT)
    assert "still paused" in answer["text"] and "Invite users via link" in answer["text"]
    with world.session_factory() as session:
        channel = session.scalars(select(Channel).where(Channel.open_chat_id == open_chat.id)).one()
    assert channel.status == ChannelStatus.LOST_RIGHTS
    assert len(world.bot_posts(open_chat)) == posts_before  # a paused pair posts nothing

    world.telegram.add_admin(closed_chat, world.telegram.bot)  # every right back
    owner.wait_for_message(lambda m: "live again" in m.text, timeout=TIMEOUT)
    with world.session_factory() as session:
        assert session.get(Channel, channel.id).status == ChannelStatus.ACTIVE
