"""Membership changes and the updates they cause; joining by invite link from a person's side.

Both Bot API methods (ban, unban, approve) and people's actions (join, leave, block the bot) go
through `set_member`, so the chat_member / my_chat_member updates are the same whoever acts.
Callers hold the world lock.
"""

from __future__ import annotations

from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_state import (
    ChatRecord, ChatType, InviteLinkRecord, JoinRequestRecord, MemberRecord, MemberStatus,
    UserRecord, World,
)

ADMIN_STATUSES = (MemberStatus.CREATOR, MemberStatus.ADMINISTRATOR)


class JoinRefused(Exception):
    """A person's Telegram client could not join; `reason` says why, as the client would."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bot_is_admin(world: World, where: ChatRecord) -> bool:
    return world.member(where, world.bot.id).status in ADMIN_STATUSES


def set_member(
    world: World, where: ChatRecord, user_id: int, new: MemberRecord, *, actor_id: int,
    link: InviteLinkRecord | None = None, via_join_request: bool = False,
) -> None:
    """Change a membership and send the update Telegram would send about it, if any."""
    old = world.member(where, user_id)
    where.members[user_id] = new
    if (old.status, old.rights, old.until_date, old.is_member) == (
        new.status, new.rights, new.until_date, new.is_member
    ):
        return
    changed = render.chat_member_updated(
        world, where, actor_id, user_id, old, new, link=link, via_join_request=via_join_request
    )
    if user_id == world.bot.id:
        world.updates.push("my_chat_member", changed)
    elif where.type != ChatType.PRIVATE and bot_is_admin(world, where):
        # Telegram tells only administrator bots about other members (and only if asked for
        # chat_member in allowed_updates, which the update queue checks).
        world.updates.push("chat_member", changed)
    world.notify()


def members_joined_via(world: World, where: ChatRecord, url: str) -> int:
    return sum(
        1 for user_id, member in list(where.members.items())
        if member.invite_link == url and world.is_in_chat(where, user_id)
    )


def find_link(world: World, url: str) -> tuple[ChatRecord, InviteLinkRecord] | None:
    for where in world.chats.values():
        link = where.invite_links.get(url)
        if link:
            return where, link
    return None


def usable_link(world: World, where: ChatRecord, link: InviteLinkRecord) -> str | None:
    """Why a link cannot be used right now, or None if it can."""
    if link.is_revoked:
        return "revoked"
    if link.expire_date and link.expire_date <= world.now():
        return "expired"
    # "The maximum number of users that can be members of the chat simultaneously after
    # joining via this link": count current members who came by it.
    if link.member_limit and members_joined_via(world, where, link.url) >= link.member_limit:
        return "limit_reached"
    return None


def join_by_link(world: World, person: UserRecord, url: str) -> str:
    """A person opens an invite link: "joined", "requested" or "already_member"."""
    found = find_link(world, url.strip())
    if found is None:
        raise JoinRefused("invalid")
    where, link = found
    if world.is_in_chat(where, person.id):
        return "already_member"
    if world.member(where, person.id).status == MemberStatus.KICKED:
        raise JoinRefused("banned")
    problem = usable_link(world, where, link)
    if problem:
        raise JoinRefused(problem)
    if link.creates_join_request:
        if person.id not in where.join_requests:
            where.join_requests[person.id] = JoinRequestRecord(person.id, world.now(), link.url)
            if world.has_right(where, world.bot.id, "can_invite_users"):
                world.updates.push("chat_join_request", render.chat_join_request(world, where, person.id))
            world.notify()
        return "requested"
    link.uses += 1
    set_member(world, where, person.id, MemberRecord(MemberStatus.MEMBER, invite_link=link.url),
               actor_id=person.id, link=link)
    return "joined"


def join_public(world: World, person: UserRecord, where: ChatRecord) -> str:
    """A person joins a public chat from its page (no invite link needed)."""
    if world.is_in_chat(where, person.id):
        return "already_member"
    if world.member(where, person.id).status == MemberStatus.KICKED:
        raise JoinRefused("banned")
    if not where.username:
        raise JoinRefused("private")
    set_member(world, where, person.id, MemberRecord(MemberStatus.MEMBER), actor_id=person.id)
    return "joined"


def leave(world: World, person: UserRecord, where: ChatRecord) -> None:
    if world.member(where, person.id).status == MemberStatus.CREATOR:
        raise JoinRefused("owner cannot leave")  # Telegram asks the owner to transfer first
    if world.is_in_chat(where, person.id):
        set_member(world, where, person.id, MemberRecord(MemberStatus.LEFT), actor_id=person.id)
