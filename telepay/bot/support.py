"""/paysupport, /privacy and /terms: what Telegram's terms require of a bot that takes payments.

/paysupport: the buyer picks one of their payments (Stars or crypto), then says in one message
what is wrong; operators and the channel's owner are told (`telepay.services.stars.support`).
The conversation is persistent, like the others, so a restart in between loses nothing.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler, MessageHandler, filters

from telepay.bot.common import Context, ack, db, keyboard, now, show
from telepay.services.stars.support import legal_text, open_request, recent_payments

PICK, WRITE = range(2)
NO_PAYMENTS = ("I don't see any payments from you. If you paid and got nothing, write what happened "
               "in one message (when, how much, how) and our team will look into it.")


async def begin(update: Update, context: Context) -> int:
    """/paysupport: lists the buyer's recent payments to pick from (or asks directly)."""
    choices = await db(context, recent_payments, update.effective_user.id)
    if not choices:
        context.user_data["paysupport"] = "none"
        await update.effective_message.reply_text(NO_PAYMENTS)
        return WRITE
    rows = [[(choice.label[:60], f"ps:{choice.ref}")] for choice in choices]
    await update.effective_message.reply_text("🆘 Payment support — which payment is it about?",
                                              reply_markup=keyboard(*rows, [("✖ Cancel", "ps:no")]))
    return PICK


async def pick(update: Update, context: Context) -> int:
    """A payment picked: stores it and asks what is wrong."""
    ref = update.callback_query.data.split(":", 1)[1]
    await ack(update)
    if ref == "no":
        await show(update, "Nothing sent. Write /paysupport whenever you need us.")
        return ConversationHandler.END
    context.user_data["paysupport"] = ref
    await show(update, "What went wrong? Write it in one message and I'll pass it on to the team and the "
                       "channel's owner.")
    return WRITE


async def write(update: Update, context: Context) -> int:
    """The buyer's words: kept, and sent to the operators and the owner."""
    ref = context.user_data.pop("paysupport", None)
    svc = context.services
    user = update.effective_user
    text = update.effective_message.text

    def record(session):
        picked = None if ref in (None, "none") else ref
        return open_request(session, svc.jobs, user.id, user.username, picked, text, now(context))

    try:
        number = await db(context, record)
    except LookupError:
        await update.effective_message.reply_text("I can't find that payment any more. Please send /paysupport again.")
        return ConversationHandler.END
    svc.wake_worker()
    await update.effective_message.reply_text(
        f"✅ Thanks — request #{number} is with our team. We'll answer here; refunds for what we can't "
        "deliver go back the way you paid.")
    return ConversationHandler.END


async def cancel(update: Update, context: Context) -> int:
    """/cancel inside /paysupport."""
    context.user_data.pop("paysupport", None)
    await update.effective_message.reply_text("Nothing sent. Write /paysupport whenever you need us.")
    return ConversationHandler.END


async def privacy(update: Update, context: Context) -> None:
    """/privacy: the operator's privacy policy (or the shipped default)."""
    await update.effective_message.reply_text(await db(context, legal_text, "privacy"))


async def terms(update: Update, context: Context) -> None:
    """/terms: the operator's terms (or the shipped default)."""
    await update.effective_message.reply_text(await db(context, legal_text, "terms"))


def conversation() -> ConversationHandler:
    private = filters.ChatType.PRIVATE
    return ConversationHandler(
        entry_points=[CommandHandler("paysupport", begin, filters=private)],
        states={PICK: [CallbackQueryHandler(pick, pattern=r"^ps:")],
                WRITE: [MessageHandler(private & filters.TEXT & ~filters.COMMAND, write)]},
        fallbacks=[CommandHandler("cancel", cancel)],
        name="paysupport",
        persistent=True,
        allow_reentry=True,
    )


def handlers() -> list:
    return [conversation(), CommandHandler("privacy", privacy), CommandHandler("terms", terms)]
