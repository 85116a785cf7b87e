"""Bot API JSON for the sandbox's records: User, Chat, ChatFullInfo, Message, ChatMember, ...

Shapes follow the Bot API 10.1 reference; the oracle test checks every answer against it.
Optional fields are left out when empty, as Telegram does. Callers hold the world lock.
"""

from __future__ import annotations

from telepay_sandbox.telegram_state import (
    ADMIN_RIGHTS, CHANNEL_ONLY_RIGHTS, MEMBER_PERMISSIONS, SUPERGROUP_ONLY_RIGHTS,
    ChatRecord, ChatType, InviteLinkRecord, MemberRecord, MemberStatus, MessageRecord,
    UserRecord, World,
)


def _compact(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if value is not None}


def user(record: UserRecord) -> dict:
    return _compact({
        "id": record.id, "is_bot": record.is_bot, "first_name": record.first_name,
        "last_name": record.last_name, "username": record.username,
        "language_code": None if record.is_bot else record.language_code,
    })


def bot_user(record: UserRecord) -> dict:
    """getMe's answer: the bot's User with the capability flags only getMe returns."""
    return {
        **user(record), "can_join_groups": True, "can_read_all_group_messages": False,
        "supports_inline_queries": False, "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def chat(world: World, record: ChatRecord) -> dict:
    if record.type == ChatType.PRIVATE:
        person = world.users[record.id]
        return _compact({
            "id": record.id, "type": "private", "first_name": person.first_name,
            "last_name": person.last_name, "username": person.username,
        })
    return _compact({
        "id": record.id, "type": record.type.value, "title": record.title,
        "username": record.username,
    })


def chat_full_info(world: World, record: ChatRecord) -> dict:
    info = {
        **chat(world, record),
        "accent_color_id": abs(record.id) % 7,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": True, "limited_gifts": True, "unique_gifts": True,
            "premium_subscription": True, "gifts_from_channels": True,
        },
    }
    if record.type != ChatType.PRIVATE:
        info.update(_compact({"description": record.description}))
    if record.type == ChatType.SUPERGROUP:
        info["permissions"] = {name: True for name in MEMBER_PERMISSIONS}
    return info


def message(world: World, record: MessageRecord, *, with_reply: bool = True) -> dict:
    where = world.chats[record.chat_id]
    body: dict = {"message_id": record.message_id, "date": record.date, "chat": chat(world, where)}
    if where.type == ChatType.CHANNEL:
        body["sender_chat"] = chat(world, where)  # channel posts are signed by the channel
    elif record.sender_id is not None:
        body["from"] = user(world.users[record.sender_id])
    if record.forward_origin:
        body["forward_origin"] = record.forward_origin
    if record.reply_to_message_id and with_reply:
        replied = where.messages.get(record.reply_to_message_id)
        if replied and not replied.deleted:
            body["reply_to_message"] = message(world, replied, with_reply=False)
    if record.edit_date:
        body["edit_date"] = record.edit_date
    if record.service:
        body.update(record.service)  # an invoice or a payment: no text
    else:
        body["text"] = record.text
    if record.entities:
        body["entities"] = record.entities
    # Telegram echoes only inline keyboards back in Message.reply_markup.
    if record.reply_markup and "inline_keyboard" in record.reply_markup:
        body["reply_markup"] = record.reply_markup
    return body


def chat_member(world: World, where: ChatRecord, user_id: int, member: MemberRecord | None = None) -> dict:
    member = member or world.member(where, user_id)
    body: dict = {"status": member.status.value, "user": user(world.users[user_id])}
    if member.status == MemberStatus.CREATOR:
        body["is_anonymous"] = False
    elif member.status == MemberStatus.ADMINISTRATOR:
        body["can_be_edited"] = member.promoted_by_bot and user_id != world.bot.id
        body["is_anonymous"] = member.rights.get("is_anonymous", False)
        extra = CHANNEL_ONLY_RIGHTS if where.type == ChatType.CHANNEL else SUPERGROUP_ONLY_RIGHTS
        for right in ADMIN_RIGHTS + extra:
            body[right] = member.rights.get(right, False)
    elif member.status == MemberStatus.RESTRICTED:
        body["is_member"] = member.is_member
        for permission in MEMBER_PERMISSIONS:
            body[permission] = member.rights.get(permission, False)
        body["until_date"] = member.until_date
    elif member.status == MemberStatus.KICKED:
        body["until_date"] = member.until_date
    return body


def invite_link(world: World, where: ChatRecord, link: InviteLinkRecord) -> dict:
    url = link.url
    if link.creator_id != world.bot.id:
        # Links made by other admins are shown to the bot with their secret part hidden.
        url = url[: url.rindex("+") + 1 if "+" in url else len(url)] + "..."
    body = _compact({
        "invite_link": url, "creator": user(world.users[link.creator_id]),
        "creates_join_request": link.creates_join_request, "is_primary": link.is_primary,
        "is_revoked": link.is_revoked, "name": link.name, "expire_date": link.expire_date,
        "member_limit": link.member_limit,
    })
    if link.creates_join_request:
        body["pending_join_request_count"] = sum(
            1 for request in where.join_requests.values() if request.invite_link == link.url
        )
    return body


def chat_member_updated(
    world: World, where: ChatRecord, actor_id: int, user_id: int,
    old: MemberRecord, new: MemberRecord, *, link: InviteLinkRecord | None = None,
    via_join_request: bool = False,
) -> dict:
    body = {
        "chat": chat(world, where), "from": user(world.users[actor_id]), "date": world.now(),
        "old_chat_member": chat_member(world, where, user_id, old),
        "new_chat_member": chat_member(world, where, user_id, new),
    }
    if link:
        body["invite_link"] = invite_link(world, where, link)
    if via_join_request:
        body["via_join_request"] = True
    return body


def chat_join_request(world: World, where: ChatRecord, user_id: int) -> dict:
    request = where.join_requests[user_id]
    body = {
        "chat": chat(world, where), "from": user(world.users[user_id]),
        # The bot may message the requester in this private chat for the next 5 minutes.
        "user_chat_id": user_id, "date": request.date,
    }
    if request.invite_link:
        body["invite_link"] = invite_link(world, where, where.invite_links[request.invite_link])
    return body
