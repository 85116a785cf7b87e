"""Ownership follows Telegram's truth: before an owner's sensitive action (payout address, tiers,
"Post now", figures), Telegram is asked whether they still administer both chats of the pair.

Being refused there is also news for the payouts: the owner's are held and the operators told
(`telepay.services.rights.owner_changed`), exactly as the periodic check would do.
"""

from __future__ import annotations

from telegram import Update

from telepay.bot.common import Context, db, now, services
from telepay.errors import InvalidInput
from telepay.models import Channel
from telepay.services.channels import owned_channel
from telepay.services.rights import is_admin, owner_changed

NOT_ADMIN = ("Only an administrator of both channels can do this, and Telegram no longer lists you as "
             "one. Nothing was changed.")


async def admin_owner(update: Update, context: Context, channel_id: int) -> Channel:
    """The pair if this user registered it and Telegram still lists them as admin of both chats."""
    user_id = update.effective_user.id
    channel = await db(context, owned_channel, channel_id, user_id)
    answers = [await is_admin(context.bot, chat_id, user_id)
               for chat_id in (channel.open_chat_id, channel.closed_chat_id)]
    admin = all(answers)
    if None not in answers:
        svc = services(context)
        await db(context, owner_changed, svc.jobs, channel.id, user_id, admin, now(context))
    if not admin:
        raise InvalidInput(NOT_ADMIN)
    return channel
