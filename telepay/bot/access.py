"""Join requests, joins, the bot's own rights changing, and "Get my invite": thin handlers over
`AccessService` and `ChannelRights`.

The bot sees `chat_join_request` and `chat_member` updates because `telepay run` polls with
every update type and is an administrator of each closed channel.
"""

from __future__ import annotations

from telegram import ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, ChatJoinRequestHandler, ChatMemberHandler

from telepay.bot.common import Context, ack, limits
from telepay.bot.limits import INVITE, allowed
from telepay.services.payments import texts

GET_INVITE = r"^invite:[A-Za-z0-9]{6,16}$"
_IN = (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER)


async def join_request(update: Update, context: Context) -> None:
    """Someone asked to join by a link: approve the subscriber on their own link, decline others."""
    request = update.chat_join_request
    link = request.invite_link.invite_link if request.invite_link else None
    await context.services.access.on_join_request(context.bot, request.chat.id, request.from_user.id, link)


async def member_changed(update: Update, context: Context) -> None:
    """Someone joined a chat: if by their own invite, the link is spent and revoked."""
    change = update.chat_member
    if change.new_chat_member.status in _IN and change.old_chat_member.status not in _IN and change.invite_link:
        await context.services.access.on_member_joined(context.bot, change.chat.id,
                                                        change.new_chat_member.user.id,
                                                        change.invite_link.invite_link)


async def get_invite(update: Update, context: Context) -> None:
    """`invite:<key>` (from /mysubs): a fresh personal link to the channel, earlier ones revoked."""
    key = update.callback_query.data.split(":", 1)[1]
    if not await allowed(update, limits(context), INVITE):
        return
    text, link = await context.services.access.fresh_invite(context.bot, update.effective_user.id, key)
    await ack(update)
    markup = (InlineKeyboardMarkup([[InlineKeyboardButton(texts.join_button("the channel"), url=link)]])
              if link else None)
    await update.effective_chat.send_message(text, reply_markup=markup)


async def bot_rights_changed(update: Update, context: Context) -> None:
    """The bot's own rights changed in a chat: check (and pause or resume) the pair it belongs to."""
    await context.rights.check_chat(update.my_chat_member.chat.id)
    context.services.wake_worker()  # a resumed pair has invites to send


def handlers() -> list[BaseHandler]:
    return [ChatJoinRequestHandler(join_request),
            ChatMemberHandler(member_changed, ChatMemberHandler.CHAT_MEMBER),
            ChatMemberHandler(bot_rights_changed, ChatMemberHandler.MY_CHAT_MEMBER),
            CallbackQueryHandler(get_invite, pattern=GET_INVITE)]
