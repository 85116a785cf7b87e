"""The settings form: buttons and typed answers collect edits in a draft; "Save all changes" applies them.

The draft lives in user_data["drafts"][channel id] (JSON: amounts as strings) and the field
waiting for a typed answer in user_data["awaiting"], so a restart keeps both. Only the owner
who registered the pair can open the form, and saving re-checks with Telegram that they still
administer both channels. A payout-address change needs an explicit confirmation and is
announced to the owner after it is saved.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Update
from telegram.error import BadRequest, Forbidden

from telepay.bot.common import Context, ack, db, keyboard, now, show, tell_error
from telepay.bot.ownership import admin_owner
from telepay.bot.setup_view import (
    FormData, address_confirmation, currency_menu, notify_menu, render_form, strategy_menu, tier_menu,
    tier_values,
)
from telepay.errors import InvalidInput, TelePayError
from telepay.services.channels import notification_target_problem, owned_channel, parse_chat_reference
from telepay.services.setup import (
    MAX_TIERS, PRICE_MAX, PRICE_MIN, REPOST_CHOICES, THRESHOLD_MAX, THRESHOLD_MIN, SetupService, check_donation_text,
    current, parse_days, parse_stars, parse_usd,
)

logger = logging.getLogger(__name__)

FORM, INPUT = "form", "input"
TIER_NUMBERS = tuple(str(n) for n in range(1, MAX_TIERS + 1))
QUESTIONS = {
    "price": f"Send the price of tier {{n}} in US dollars (from ${PRICE_MIN} to ${PRICE_MAX:,}), e.g. 9.99.",
    "days": "How many days of access does tier {n} give? Send a whole number from 1 to 3,650.",
    "addr": "Send your payout address for {currency}.",
    "threshold": f"Send the amount in US dollars at which you want to be paid out (at least ${THRESHOLD_MIN}).",
    "chat": ("Send the @username or id of the group or channel for sale notifications. You must be an "
             "admin there, and I must be able to post there."),
    "text": "Send the text of your donation post (up to 1,000 characters).",
    "stars": "Send the price of tier {n} in Telegram Stars (1 to 10,000), or 0 to follow its USD price.",
}


def _form_data(session, channel_id: int, user_id: int) -> FormData:
    channel = owned_channel(session, channel_id, user_id)
    options = {f"{c.code}:{c.network}": c.name for c in SetupService.currencies(session)}
    return FormData(channel.id, channel.open_title, channel.closed_title, channel.status, current(channel), options)


def _draft(context: Context, cid: int) -> dict:
    return context.user_data.setdefault("drafts", {}).setdefault(str(cid), {})


def _clean(context: Context, cid: int) -> None:
    drafts = context.user_data.get("drafts") or {}
    if not drafts.get(str(cid)):
        drafts.pop(str(cid), None)


async def send_form(update: Update, context: Context, cid: int, note: str = "", edit: bool = False) -> str:
    """Shows the form (editing the pressed message when `edit`), and returns the FORM state."""
    data = await db(context, _form_data, cid, update.effective_user.id)
    draft = (context.user_data.get("drafts") or {}).get(str(cid)) or {}
    text, markup = render_form(data, draft, note)
    if edit:
        await show(update, text, markup)
    else:
        await update.effective_chat.send_message(text, reply_markup=markup)
    return FORM


async def _ask(update: Update, context: Context, cid: int, field: str, question: str) -> str:
    context.user_data.pop("register", None)
    context.user_data["awaiting"] = {"cid": cid, "field": field}
    await show(update, question, keyboard([("« Back to the form", f"cfg:{cid}")]))
    return INPUT


async def button(update: Update, context: Context) -> str:
    """Any `cfg:<channel>:...` button: shows a sub-menu, records an edit, asks, saves or discards."""
    parts = update.callback_query.data.split(":")
    cid, action = int(parts[1]), parts[2:]
    context.user_data.pop("awaiting", None)  # a button instead of a typed answer: stop waiting
    if action[:1] == ["t"] and not (len(action) > 1 and action[1] in TIER_NUMBERS):
        # Only our own buttons name tiers, 1 to 3; anything else was forged and records nothing.
        await ack(update, "This button has expired. Send /start to begin again.")
        return FORM
    try:
        if not action:
            # Opening the form shows the payout address and prices: Telegram must still list
            # this user as admin of both chats (sub-menus are drafts; saving asks again).
            await admin_owner(update, context, cid)
        data = await db(context, _form_data, cid, update.effective_user.id)
        if action[:1] == ["save"] or action[:1] == ["confirm"]:
            return await save(update, context, cid, confirmed=action[0] == "confirm")
    except TelePayError as error:
        await tell_error(update, error)
        return FORM
    await ack(update)
    draft = _draft(context, cid)
    saved = data.saved
    match action:
        case ["t", n]:
            text, markup = tier_menu(cid, int(n), tier_values(saved, draft)[int(n)])
            await show(update, text, markup)
            _clean(context, cid)
            return FORM
        case ["t", n, ("price" | "days" | "stars") as what]:
            _clean(context, cid)
            return await _ask(update, context, cid, f"{what}:{n}", QUESTIONS[what].format(n=n))
        case ["t", n, "del"]:
            draft.setdefault("tiers", {})[n] = None
        case ["cur"]:
            _clean(context, cid)
            text, markup = currency_menu(cid, data.currencies)
            await show(update, text, markup)
            return FORM
        case ["cur", code, network] if f"{code}:{network}" in data.currencies:
            draft["currency"] = f"{code}:{network}"
        case ["addr"]:
            chosen = draft.get("currency") or (f"{saved.currency}:{saved.network}" if saved.currency else None)
            if chosen is None:
                _clean(context, cid)
                text, markup = currency_menu(cid, data.currencies)
                await show(update, "First choose the payout currency.\n\n" + text, markup)
                return FORM
            _clean(context, cid)
            return await _ask(update, context, cid, "addr", QUESTIONS["addr"].format(currency=data.currencies[chosen]))
        case ["strat"]:
            _clean(context, cid)
            text, markup = strategy_menu(cid)
            await show(update, text, markup)
            return FORM
        case ["strat", "instant"]:
            draft["strategy"] = "instant"
            draft.pop("threshold", None)
        case ["strat", "threshold"] | ["notify", "chat"] | ["text"]:
            _clean(context, cid)
            field = {"strat": "threshold", "notify": "chat", "text": "text"}[action[0]]
            return await _ask(update, context, cid, field, QUESTIONS[field])
        case ["notify"]:
            _clean(context, cid)
            text, markup = notify_menu(cid, draft.get("notify", saved.notify))
            await show(update, text, markup)
            return FORM
        case ["notify", "toggle"]:
            draft["notify"] = not draft.get("notify", saved.notify)
        case ["notify", "me"]:
            draft["notify_chat_id"] = None
            draft["notify"] = True
        case ["pm", ("crypto" | "stars") as method]:
            name = f"accept_{method}"
            draft[name] = not draft.get(name, getattr(saved, name))
        case ["repost"]:
            hours = draft.get("repost_hours", saved.repost_hours)
            later = [h for h in REPOST_CHOICES if h > hours]
            draft["repost_hours"] = later[0] if later else REPOST_CHOICES[0]
        case ["discard"]:
            context.user_data.get("drafts", {}).pop(str(cid), None)
            context.user_data.pop("awaiting", None)
            return await send_form(update, context, cid, "🗑 Changes discarded.", edit=True)
    _drop_no_ops(draft, saved)
    _clean(context, cid)
    return await send_form(update, context, cid, edit=True)


def _drop_no_ops(draft: dict, saved) -> None:
    """Edits that put a value back to what is saved are not changes."""
    if draft.get("repost_hours") == saved.repost_hours:
        draft.pop("repost_hours")
    if "notify" in draft and draft["notify"] == saved.notify and "notify_chat_id" not in draft:
        draft.pop("notify")
    for name in ("accept_crypto", "accept_stars"):
        if name in draft and draft[name] == getattr(saved, name):
            draft.pop(name)


async def answer(update: Update, context: Context) -> str:
    """A typed answer to the question the form asked; stores it in the draft and shows the form."""
    awaiting = context.user_data.get("awaiting")
    if not awaiting:
        await update.effective_message.reply_text("Please use the buttons, or send /start for the menu.")
        return FORM
    cid, field = awaiting["cid"], awaiting["field"]
    text = update.effective_message.text or ""
    try:
        await db(context, owned_channel, cid, update.effective_user.id)
        draft = _draft(context, cid)
        if field.startswith(("price:", "days:", "stars:")):
            what, number = field.split(":")
            tier = draft.setdefault("tiers", {}).get(number) or {}
            if what == "price":
                tier["price"] = str(parse_usd(text, PRICE_MIN, PRICE_MAX, "price"))
            elif what == "stars":
                tier["stars"] = parse_stars(text)
            else:
                tier["days"] = parse_days(text)
            draft["tiers"][number] = tier
        elif field == "addr":
            draft["address"] = await _checked_address(context, cid, update.effective_user.id, draft, text.strip())
        elif field == "threshold":
            draft["threshold"] = str(parse_usd(text, THRESHOLD_MIN, THRESHOLD_MAX, "threshold"))
            draft["strategy"] = "threshold"
        elif field == "chat":
            draft["notify_chat_id"] = await _notify_chat(context, text, update.effective_user.id)
            draft["notify"] = True
        elif field == "text":
            draft["donation_text"] = check_donation_text(text)
    except TelePayError as error:
        _clean(context, cid)
        await update.effective_message.reply_text(error.message + "\n\nPlease send it again.",
                                                  reply_markup=keyboard([("« Back to the form", f"cfg:{cid}")]))
        return INPUT
    context.user_data.pop("awaiting", None)
    note = ""
    if field.startswith("price:") and not draft["tiers"][field[6:]].get("days"):
        note = f"Now set the duration of tier {field[6:]} too."
    elif field.startswith("days:") and not draft["tiers"][field[5:]].get("price"):
        note = f"Now set the price of tier {field[5:]} too."
    return await send_form(update, context, cid, note)


async def _checked_address(context: Context, cid: int, user_id: int, draft: dict, address: str) -> str:
    """Format check against the chosen network, then ChangeNOW's check; returns the address."""
    network = await db(context, context.services.setup.check_address, cid, user_id, draft, address)
    await asyncio.to_thread(context.services.setup.check_address_remotely, network, address)
    return address


async def _notify_chat(context: Context, text: str, owner_id: int) -> int:
    """A group or channel the owner administers and the bot can post in; its id."""
    try:
        chat = await context.bot.get_chat(parse_chat_reference(text))
    except (BadRequest, Forbidden):
        raise InvalidInput("I can't see that chat. Add me to it first, then send it again.") from None
    if chat.type == "private":
        raise InvalidInput("Please send a group or a channel (or choose “Send them to me here”).")
    problem = await notification_target_problem(context.bot, chat.id, owner_id)
    if problem:
        raise InvalidInput(problem)
    return chat.id


async def save(update: Update, context: Context, cid: int, confirmed: bool) -> str:
    """Validates the whole draft; asks to confirm an address change; re-checks admin; applies it."""
    setup: SetupService = context.services.setup
    user_id = update.effective_user.id
    draft = (context.user_data.get("drafts") or {}).get(str(cid)) or {}
    review = await db(context, setup.review, cid, user_id, draft)
    if review.address_change and not confirmed:
        await ack(update)
        text, markup = address_confirmation(cid, review.address_change[1], review.network_label)
        await show(update, text, markup)
        return FORM
    if review.address_change:
        await asyncio.to_thread(setup.check_address_remotely, review.network, review.address_change[1])
    channel = await admin_owner(update, context, cid)
    applied = await db(context, setup.apply, cid, user_id, draft, confirmed)
    context.user_data.get("drafts", {}).pop(str(cid), None)
    await ack(update, "Saved ✅")
    note = "✅ All changes saved."
    if applied.activated:
        note += " Your channel is live: I'm posting the subscription and donation posts now."
    elif applied.reposted:
        note += " I'm updating the posts in your channels."
    if applied.activated or applied.reposted:
        context.services.wake_worker()
    await send_form(update, context, cid, note, edit=True)
    if applied.address_change:
        old, new = applied.address_change
        await update.effective_chat.send_message(
            f"🔐 Security notice: the payout address of “{channel.open_title}” was changed "
            f"{now(context):%d %b %Y at %H:%M} UTC.\n\nNew: {new} ({applied.network_label})\n"
            f"Previous: {old or 'none'}\n\nIf you did not make this change, contact support right away.")
    return FORM
