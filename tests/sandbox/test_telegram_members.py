"""Invite links, join requests, bans and unbans, as Telegram applies them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from telepay.clock import ManualClock
from telepay_sandbox.telegram import JoinRefused, RateLimits, TelegramSandbox
from tests.sandbox.conftest import RawBotApi

ALL_UPDATES = ["message", "callback_query", "chat_member", "my_chat_member", "chat_join_request"]


def _updates_of(sandbox, kind):
    return [update[kind] for update in sandbox.updates if kind in update]


def test_join_request_link_approve_and_decline(sandbox, api, channel):
    sandbox.allowed_updates = ALL_UPDATES
    link = api.result("createChatInviteLink", chat_id=channel.id, creates_join_request=True, name="buyer")
    assert link["creates_join_request"] is True and link["is_revoked"] is False
    buyer, stranger = sandbox.create_user("Buyer"), sandbox.create_user("Stranger")

    assert buyer.join(link["invite_link"]) == "requested"
    assert stranger.join(link["invite_link"]) == "requested"
    assert buyer.join(link["invite_link"]) == "requested"  # asking twice is still one request
    requests = _updates_of(sandbox, "chat_join_request")
    assert [r["from"]["id"] for r in requests] == [buyer.id, stranger.id]
    assert requests[0]["invite_link"]["invite_link"] == link["invite_link"]
    assert requests[0]["user_chat_id"] == buyer.id
    assert sandbox.pending_join_requests(channel) == [buyer.id, stranger.id]

    assert api.result("approveChatJoinRequest", chat_id=channel.id, user_id=buyer.id) is True
    assert api.result("declineChatJoinRequest", chat_id=channel.id, user_id=stranger.id) is True
    assert buyer.status_in(channel) == "member" and stranger.status_in(channel) == "left"
    assert sandbox.invite_link_uses(link["invite_link"]) == 1
    joined = _updates_of(sandbox, "chat_member")[-1]
    assert joined["new_chat_member"]["user"]["id"] == buyer.id
    assert joined["via_join_request"] is True
    assert joined["invite_link"]["invite_link"] == link["invite_link"]

    again = api("approveChatJoinRequest", chat_id=channel.id, user_id=stranger.id)
    assert again == {"ok": False, "error_code": 400, "description": "Bad Request: HIDE_REQUESTER_MISSING"}


def test_bot_may_write_to_a_requester_who_never_started_it(sandbox, api, channel):
    link = api.result("createChatInviteLink", chat_id=channel.id, creates_join_request=True)
    requester, other = sandbox.create_user("Req"), sandbox.create_user("Other")
    requester.join(link["invite_link"])
    assert api("sendMessage", chat_id=requester.id, text="Who are you?")["ok"] is True
    answer = api("sendMessage", chat_id=other.id, text="Hello")
    assert answer["error_code"] == 403
    assert answer["description"] == "Forbidden: bot can't initiate conversation with a user"


def test_member_limit_counts_members_who_joined_by_the_link(sandbox, api, channel):
    link = api.result("createChatInviteLink", chat_id=channel.id, member_limit=1)["invite_link"]
    first, second = sandbox.create_user("First"), sandbox.create_user("Second")
    assert first.join(link) == "joined"
    with pytest.raises(JoinRefused, match="limit_reached"):
        second.join(link)
    first.leave(channel)  # "simultaneously": a place frees up when someone leaves
    assert second.join(link) == "joined"
    assert sandbox.invite_link_uses(link) == 2


def test_revoked_link_refuses_and_reports_revoked(sandbox, api, channel):
    link = api.result("createChatInviteLink", chat_id=channel.id)["invite_link"]
    revoked = api.result("revokeChatInviteLink", chat_id=channel.id, invite_link=link)
    assert revoked["is_revoked"] is True and revoked["invite_link"] == link
    with pytest.raises(JoinRefused, match="revoked"):
        sandbox.create_user("Late").join(link)
    with pytest.raises(JoinRefused, match="invalid"):
        sandbox.create_user("Typo").join(link + "x")


def test_link_expires_at_its_expire_date():
    clock = ManualClock()
    with TelegramSandbox(rate_limits=RateLimits.off(), clock=clock) as sandbox, RawBotApi(sandbox) as api:
        channel = sandbox.create_channel("Timed")
        sandbox.add_admin(channel, sandbox.bot)
        expire = sandbox.now() + 60
        link = api.result("createChatInviteLink", chat_id=channel.id, expire_date=expire)
        assert link["expire_date"] == expire
        assert sandbox.create_user("Early").join(link["invite_link"]) == "joined"
        clock.advance(timedelta(seconds=61))
        with pytest.raises(JoinRefused, match="expired"):
            sandbox.create_user("Late").join(link["invite_link"])


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"member_limit": 5, "creates_join_request": True},
         "Bad Request: member_limit can't be specified for links requiring administrator approval"),
        ({"member_limit": 0}, "Bad Request: USAGE_LIMIT_INVALID"),
        ({"member_limit": 100000}, "Bad Request: USAGE_LIMIT_INVALID"),
        ({"name": "x" * 33}, "Bad Request: invite link name is too long"),
        ({"expire_date": 1}, "Bad Request: EXPIRE_DATE_INVALID"),
    ],
)
def test_create_invite_link_validates(api, channel, params, description):
    answer = api("createChatInviteLink", chat_id=channel.id, **params)
    assert (answer["error_code"], answer["description"]) == (400, description)


def test_creating_links_needs_invite_rights(sandbox, api):
    chat = sandbox.create_channel("No rights")
    assert api("createChatInviteLink", chat_id=chat.id)["description"] == "Bad Request: chat not found"
    sandbox.add_admin(chat, sandbox.bot, can_invite_users=False)
    answer = api("createChatInviteLink", chat_id=chat.id)
    assert answer["description"] == "Bad Request: not enough rights to manage chat invite link"


def test_banned_user_cannot_rejoin_until_unbanned(sandbox, api, channel):
    sandbox.allowed_updates = ALL_UPDATES
    member = sandbox.create_user("Member")
    member.join(api.result("createChatInviteLink", chat_id=channel.id)["invite_link"])

    assert api.result("banChatMember", chat_id=channel.id, user_id=member.id) is True
    assert member.status_in(channel) == "kicked"
    kicked = api.result("getChatMember", chat_id=channel.id, user_id=member.id)
    assert kicked == {"status": "kicked", "user": member.as_dict(), "until_date": 0}
    fresh = api.result("createChatInviteLink", chat_id=channel.id)["invite_link"]
    with pytest.raises(JoinRefused, match="banned"):
        member.join(fresh)

    api.result("unbanChatMember", chat_id=channel.id, user_id=member.id, only_if_banned=True)
    assert member.status_in(channel) == "left"
    assert member.join(fresh) == "joined"
    statuses = [(u["old_chat_member"]["status"], u["new_chat_member"]["status"])
                for u in _updates_of(sandbox, "chat_member")]
    assert statuses == [("left", "member"), ("member", "kicked"), ("kicked", "left"), ("left", "member")]


def test_unban_without_only_if_banned_removes_a_member(sandbox, api, channel):
    member = sandbox.create_user("Member")
    link = api.result("createChatInviteLink", chat_id=channel.id)["invite_link"]
    member.join(link)
    api.result("unbanChatMember", chat_id=channel.id, user_id=member.id, only_if_banned=True)
    assert member.status_in(channel) == "member"  # only_if_banned leaves members alone
    api.result("unbanChatMember", chat_id=channel.id, user_id=member.id)
    assert member.status_in(channel) == "left"
    assert member.join(link) == "joined"  # and they may come back


def test_timed_ban_lifts_itself_and_short_bans_are_forever():
    clock = ManualClock()
    with TelegramSandbox(rate_limits=RateLimits.off(), clock=clock) as sandbox, RawBotApi(sandbox) as api:
        channel = sandbox.create_channel("Timed")
        sandbox.add_admin(channel, sandbox.bot)
        brief, timed = sandbox.create_user("Brief"), sandbox.create_user("Timed")
        api.result("banChatMember", chat_id=channel.id, user_id=brief.id, until_date=sandbox.now() + 10)
        until = sandbox.now() + 3600
        api.result("banChatMember", chat_id=channel.id, user_id=timed.id, until_date=until)
        assert api.result("getChatMember", chat_id=channel.id, user_id=brief.id)["until_date"] == 0
        assert api.result("getChatMember", chat_id=channel.id, user_id=timed.id)["until_date"] == until
        clock.advance(timedelta(hours=1, seconds=1))
        assert timed.status_in(channel) == "left" and brief.status_in(channel) == "kicked"


def test_ban_refusals(sandbox, api, channel):
    admin = sandbox.create_user("Admin")
    sandbox.add_admin(channel, admin)
    owner = api("banChatMember", chat_id=channel.id, user_id=channel.owner.id)
    assert owner["description"] == "Bad Request: can't remove chat owner"
    assert api("banChatMember", chat_id=channel.id, user_id=admin.id)["description"] == (
        "Bad Request: user is an administrator of the chat")
    stranger = api("banChatMember", chat_id=channel.id, user_id=424242)
    assert stranger["description"] == "Bad Request: user not found"
    weak = sandbox.create_channel("Weak")
    sandbox.add_admin(weak, sandbox.bot, can_restrict_members=False)
    assert api("banChatMember", chat_id=weak.id, user_id=admin.id)["description"] == (
        "Bad Request: not enough rights to restrict/unrestrict chat member")


def test_member_queries(sandbox, api, channel):
    member = sandbox.create_user("Member")
    sandbox.set_member_status(channel, member, "member")
    assert api.result("getChatMemberCount", chat_id=channel.id) == 3
    admins = api.result("getChatAdministrators", chat_id=channel.id)
    assert {a["status"] for a in admins} == {"creator", "administrator"}
    bot = next(a for a in admins if a["user"]["id"] == sandbox.bot.id)
    assert bot["can_post_messages"] is True and bot["can_invite_users"] is True
    other_bot_channel = sandbox.create_channel("Not mine")
    sandbox.set_member_status(other_bot_channel, sandbox.bot, "member")
    answer = api("getChatMember", chat_id=other_bot_channel.id, user_id=member.id)
    assert answer["description"] == "Bad Request: member list is inaccessible"
