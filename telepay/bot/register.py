"""Registering a channel pair: the owner names the open, then the closed channel; each is checked.

A channel is named by a forwarded post, an @username, a t.me link or its id. The bot asks
Telegram whether it is an admin there with the rights it needs and whether this user is the
creator or an admin, and says exactly what is missing. What was found so far is kept in
user_data (JSON), so the flow survives a restart. The creator of the chats may register a pair
someone else registered: it is taken over (`take_over`), both are told and it is audited.
"""

from __future__ import annotations

from telegram import ChatMember, MessageOriginChannel, Update
from telegram.error import BadRequest, Forbidden
from telegram.ext import ConversationHandler

from telepay.bot import setup_form
from telepay.bot.common import Context, ack, db, keyboard, now, services, show
from telepay.errors import TelePayError
from telepay.services.channels import (
    CLOSED, OPEN, REQUIRED_RIGHTS, ChatInfo, check_chat, identify_chat, parse_chat_reference, register_pair,
    registered_by_other, take_over,
)

REG_OPEN, REG_CLOSED = "reg_open", "reg_closed"
CANCEL = keyboard([("✖ Cancel", "reg:cancel")])

INTRO = (
    "Let's add your channels. You need two:\n"
    "• an open (public) channel, where I post your subscription offer, and\n"
    "• a closed (private) channel, which subscribers pay to join.\n\n"
    "First make me an administrator of both, with these rights: "
    + ", ".join(REQUIRED_RIGHTS[CLOSED].values()) + ".\n\n"
    "Then send me the open channel: forward any post from it, or send its @username or id."
)
ASK_CLOSED = ("✅ Open channel: “{title}”.\n\nNow send me the closed (private) channel: forward any "
              "post from it, or send its id (it starts with -100).")


async def begin(update: Update, context: Context) -> str:
    """“Add channels”: forgets any half-done registration and asks for the open channel."""
    await ack(update)
    context.user_data.pop("awaiting", None)
    context.user_data["register"] = {}
    await show(update, INTRO, CANCEL)
    return REG_OPEN


async def _identify(update: Update, context: Context, role: str) -> ChatInfo | None:
    """The channel the message names, checked for `role`; None (after explaining) if unusable."""
    message = update.effective_message
    origin = message.forward_origin
    try:
        if origin is not None:
            if not isinstance(origin, MessageOriginChannel):
                raise TelePayError("That post was not forwarded from a channel. Forward a post from "
                                   "the channel itself, or send its @username or id.")
            reference: int | str = origin.chat.id
        else:
            reference = parse_chat_reference(message.text or "")
        chat = await identify_chat(context.bot, reference)
    except TelePayError as error:
        await message.reply_text(error.message, reply_markup=CANCEL)
        return None
    problems = await check_chat(context.bot, chat, update.effective_user.id, role)
    if problems:
        await message.reply_text(
            f"I can't use “{chat.title}” as your {role} channel yet:\n\n"
            + "\n".join(f"• {problem}" for problem in problems)
            + "\n\nFix this, then send me the channel again.", reply_markup=CANCEL)
        return None
    return chat


async def receive_open(update: Update, context: Context) -> str:
    """Stores the checked open channel and asks for the closed one."""
    chat = await _identify(update, context, OPEN)
    if chat is None:
        return REG_OPEN
    context.user_data["register"] = {OPEN: {"id": chat.id, "title": chat.title, "username": chat.username}}
    await update.effective_message.reply_text(ASK_CLOSED.format(title=chat.title), reply_markup=CANCEL)
    return REG_CLOSED


async def receive_closed(update: Update, context: Context) -> str | int:
    """Checks the closed channel, registers the pair and opens its settings form."""
    found = (context.user_data.get("register") or {}).get(OPEN)
    if found is None:
        return await begin(update, context)
    chat = await _identify(update, context, CLOSED)
    if chat is None:
        return REG_CLOSED
    if chat.id == found["id"]:
        await update.effective_message.reply_text(
            "That is the open channel again. Please send the closed (private) one.", reply_markup=CANCEL)
        return REG_CLOSED
    open_chat = ChatInfo(found["id"], found["title"], found["username"])
    taken = await db(context, registered_by_other, open_chat.id, chat.id, update.effective_user.id)
    if taken is not None and await _is_creator(context, (open_chat.id, chat.id), update.effective_user.id):
        return await _take_over(update, context, taken.id)
    try:
        channel = await db(context, register_pair, update.effective_user.id, open_chat, chat)
    except TelePayError as error:
        context.user_data.pop("register", None)
        await update.effective_message.reply_text(error.message)
        return ConversationHandler.END
    context.user_data.pop("register", None)
    await update.effective_message.reply_text(
        f"🎉 Registered “{channel.open_title}” (open) and “{channel.closed_title}” (closed).\n\n"
        "Now set your prices and payout wallet. Nothing is posted until you save.")
    return await setup_form.send_form(update, context, channel.id)


async def _is_creator(context: Context, chat_ids, user_id: int) -> bool:
    for chat_id in chat_ids:
        try:
            if (await context.bot.get_chat_member(chat_id, user_id)).status == ChatMember.OWNER:
                return True
        except (BadRequest, Forbidden):
            pass
    return False


async def _take_over(update: Update, context: Context, channel_id: int) -> str:
    """The chats' creator registers a pair someone else holds: it becomes theirs (both told)."""
    svc = services(context)
    await db(context, take_over, svc.jobs, channel_id, update.effective_user.id, now(context))
    svc.wake_worker()
    context.user_data.pop("register", None)
    await update.effective_message.reply_text(
        "👑 You created this channel, so the pair is yours now. Whoever registered it before has been "
        "told, and their payout wallet was removed: set your own below. Nothing is sold until you save.")
    return await setup_form.send_form(update, context, channel_id)


async def cancel(update: Update, context: Context) -> int:
    """Cancel (button or /cancel): drops whatever the owner was in the middle of."""
    await ack(update)
    context.user_data.pop("register", None)
    context.user_data.pop("awaiting", None)
    await show(update, "Cancelled. Send /start for the menu.")
    return ConversationHandler.END
