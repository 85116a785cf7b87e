"""Bot API methods about chats, members, invite links and join requests.

getChat, getChatMember, getChatMemberCount, getChatAdministrators, createChatInviteLink,
revokeChatInviteLink, banChatMember, unbanChatMember, approveChatJoinRequest,
declineChatJoinRequest. Descriptions marked "unconfirmed" are plausible guesses where
Telegram's exact wording is not documented.
"""

from __future__ import annotations

import secrets

from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_members import ADMIN_STATUSES, set_member
from telepay_sandbox.telegram_methods_messages import resolve_chat
from telepay_sandbox.telegram_params import (
    BOOLEAN, CHAT_ID, INTEGER, STRING, Args, Param, api_method, bad_request, forbidden,
)
from telepay_sandbox.telegram_state import (
    ChatRecord, ChatType, InviteLinkRecord, MemberRecord, MemberStatus, World,
)

USER_ID = Param(INTEGER, True)
CHAT = Param(CHAT_ID, True)


def _group_chat(world: World, chat_id: int | str, *, right: str | None = None,
                missing_right: str = "not enough rights") -> ChatRecord:
    """A supergroup or channel the bot can act in, holding `right` if one is named."""
    where = resolve_chat(world, chat_id)
    if where.type == ChatType.PRIVATE:
        raise bad_request("chat member status can't be changed in private chats")
    if not world.is_in_chat(where, world.bot.id):
        if not where.username:
            raise bad_request("chat not found")  # a private chat the bot is not in is invisible
        kind = "channel" if where.type == ChatType.CHANNEL else where.type.value
        raise forbidden(f"bot is not a member of the {kind} chat")
    if right and not world.has_right(where, world.bot.id, right):
        raise bad_request(missing_right)
    return where


def _known_user(world: World, user_id: int) -> None:
    if user_id not in world.users:
        raise bad_request("user not found")


def _visible_chat(world: World, chat_id: int | str) -> ChatRecord:
    where = resolve_chat(world, chat_id)
    if where.type != ChatType.PRIVATE and not where.username and not world.is_in_chat(where, world.bot.id):
        raise bad_request("chat not found")
    return where


def _member_list_chat(world: World, chat_id: int | str) -> ChatRecord:
    where = _visible_chat(world, chat_id)
    if where.type == ChatType.CHANNEL and world.member(where, world.bot.id).status not in ADMIN_STATUSES:
        raise bad_request("member list is inaccessible")
    return where


@api_method("getChat", chat_id=CHAT)
def get_chat(world: World, args: Args) -> dict:
    return render.chat_full_info(world, _visible_chat(world, args["chat_id"]))


@api_method("getChatMember", chat_id=CHAT, user_id=USER_ID)
def get_chat_member(world: World, args: Args) -> dict:
    user_id = args["user_id"]
    _known_user(world, user_id)
    where = _visible_chat(world, args["chat_id"])
    if where.type == ChatType.PRIVATE:
        if user_id not in (where.id, world.bot.id):
            raise bad_request("user not found")
        blocked = user_id == world.bot.id and world.users[where.id].blocked_bot
        member = MemberRecord(MemberStatus.KICKED if blocked else MemberStatus.MEMBER)
        return render.chat_member(world, where, user_id, member)
    if user_id != world.bot.id:
        _member_list_chat(world, args["chat_id"])
    return render.chat_member(world, where, user_id)


@api_method("getChatMemberCount", chat_id=CHAT)
def get_chat_member_count(world: World, args: Args) -> int:
    where = _visible_chat(world, args["chat_id"])
    if where.type == ChatType.PRIVATE:
        return 2
    return sum(1 for user_id in list(where.members) if world.is_in_chat(where, user_id))


@api_method("getChatAdministrators", chat_id=CHAT, return_bots=Param(BOOLEAN))
def get_chat_administrators(world: World, args: Args) -> list[dict]:
    where = _member_list_chat(world, args["chat_id"])
    if where.type == ChatType.PRIVATE:
        raise bad_request("there are no administrators in the private chat")
    admins = []
    for user_id in list(where.members):
        if world.member(where, user_id).status not in ADMIN_STATUSES:
            continue
        # "By default, bots other than the current bot are omitted."
        if world.users[user_id].is_bot and user_id != world.bot.id and not args.get("return_bots"):
            continue
        admins.append(render.chat_member(world, where, user_id))
    return admins


@api_method(
    "createChatInviteLink", chat_id=CHAT, name=Param(STRING), expire_date=Param(INTEGER),
    member_limit=Param(INTEGER), creates_join_request=Param(BOOLEAN),
)
def create_chat_invite_link(world: World, args: Args) -> dict:
    where = _group_chat(world, args["chat_id"], right="can_invite_users",
                        missing_right="not enough rights to manage chat invite link")
    name, limit = args.get("name"), args.get("member_limit")
    if name is not None and len(name) > 32:
        raise bad_request("invite link name is too long")  # unconfirmed wording
    if limit is not None and args.get("creates_join_request"):
        # unconfirmed wording; the rule itself is documented
        raise bad_request("member_limit can't be specified for links requiring administrator approval")
    if limit is not None and not 1 <= limit <= 99999:
        raise bad_request("USAGE_LIMIT_INVALID")  # unconfirmed wording
    expire = args.get("expire_date")
    if expire is not None and expire <= world.now():
        raise bad_request("EXPIRE_DATE_INVALID")  # unconfirmed wording
    link = InviteLinkRecord(
        url=f"https://t.me/+{secrets.token_urlsafe(12)}", creator_id=world.bot.id, name=name,
        expire_date=expire, member_limit=limit,
        creates_join_request=bool(args.get("creates_join_request")),
    )
    where.invite_links[link.url] = link
    return render.invite_link(world, where, link)


@api_method("revokeChatInviteLink", chat_id=CHAT, invite_link=Param(STRING, True))
def revoke_chat_invite_link(world: World, args: Args) -> dict:
    where = _group_chat(world, args["chat_id"], right="can_invite_users",
                        missing_right="not enough rights to manage chat invite link")
    link = where.invite_links.get(args["invite_link"])
    if link is None:
        raise bad_request("INVITE_HASH_EXPIRED")  # unconfirmed wording
    if link.creator_id != world.bot.id:
        raise bad_request("CHAT_ADMIN_REQUIRED")  # the method revokes links the bot created
    link.is_revoked = True
    world.notify()
    return render.invite_link(world, where, link)


def _removable(world: World, where: ChatRecord, user_id: int) -> MemberRecord:
    _known_user(world, user_id)
    member = world.member(where, user_id)
    if member.status == MemberStatus.CREATOR:
        raise bad_request("can't remove chat owner")
    if member.status == MemberStatus.ADMINISTRATOR:
        raise bad_request("user is an administrator of the chat")
    return member


_NO_BAN_RIGHTS = "not enough rights to restrict/unrestrict chat member"


@api_method(
    "banChatMember", chat_id=CHAT, user_id=USER_ID, until_date=Param(INTEGER),
    revoke_messages=Param(BOOLEAN),
)
def ban_chat_member(world: World, args: Args) -> bool:
    where = _group_chat(world, args["chat_id"], right="can_restrict_members", missing_right=_NO_BAN_RIGHTS)
    user_id = args["user_id"]
    _removable(world, where, user_id)
    where.join_requests.pop(user_id, None)
    banned = MemberRecord(MemberStatus.KICKED, until_date=world.restriction_until(args.get("until_date")))
    set_member(world, where, user_id, banned, actor_id=world.bot.id)
    if args.get("revoke_messages") and where.type != ChatType.CHANNEL:
        for message in where.messages.values():
            if message.sender_id == user_id:
                message.deleted = True
    return True


@api_method("unbanChatMember", chat_id=CHAT, user_id=USER_ID, only_if_banned=Param(BOOLEAN))
def unban_chat_member(world: World, args: Args) -> bool:
    where = _group_chat(world, args["chat_id"], right="can_restrict_members", missing_right=_NO_BAN_RIGHTS)
    user_id = args["user_id"]
    member = _removable(world, where, user_id)
    if member.status != MemberStatus.KICKED and args.get("only_if_banned"):
        return True
    # Unbanning a current member removes them; either way they may rejoin by a link.
    if member.status == MemberStatus.KICKED or world.is_in_chat(where, user_id):
        set_member(world, where, user_id, MemberRecord(MemberStatus.LEFT), actor_id=world.bot.id)
    return True


def _join_request(world: World, args: Args):
    where = _group_chat(world, args["chat_id"], right="can_invite_users", missing_right="CHAT_ADMIN_REQUIRED")
    user_id = args["user_id"]
    _known_user(world, user_id)
    request = where.join_requests.pop(user_id, None)
    if request is None:
        raise bad_request("HIDE_REQUESTER_MISSING")
    return where, request


@api_method("approveChatJoinRequest", chat_id=CHAT, user_id=USER_ID)
def approve_chat_join_request(world: World, args: Args) -> bool:
    where, request = _join_request(world, args)
    if world.is_in_chat(where, request.user_id):
        raise bad_request("USER_ALREADY_PARTICIPANT")
    link = where.invite_links.get(request.invite_link) if request.invite_link else None
    if link:
        link.uses += 1
    joined = MemberRecord(MemberStatus.MEMBER, invite_link=request.invite_link)
    set_member(world, where, request.user_id, joined, actor_id=world.bot.id, link=link, via_join_request=True)
    return True


@api_method("declineChatJoinRequest", chat_id=CHAT, user_id=USER_ID)
def decline_chat_join_request(world: World, args: Args) -> bool:
    _join_request(world, args)
    world.notify()
    return True


METHODS = (
    get_chat, get_chat_member, get_chat_member_count, get_chat_administrators,
    create_chat_invite_link, revoke_chat_invite_link, ban_chat_member, unban_chat_member,
    approve_chat_join_request, decline_chat_join_request,
)
