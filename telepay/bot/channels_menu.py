"""“My channels”: an owner's pairs, each with its setup, “Post now” and a 30-day summary.

“Post now” shares the 5-minute cooldown per channel with the signed broadcast trigger
(`request_broadcast` claims it in the channel row), so pressing it twice is refused politely.
"Post now" and the summary first ask Telegram whether the owner still administers both chats
(`telepay.bot.ownership`). On a paused pair "Post now" asks Telegram for every right the pair
needs: it resumes only if all are back (a post going through proves only the right to post).
"""

from __future__ import annotations

from telegram import Update

from telepay.bot.common import Context, ack, db, keyboard, now, show, tell_error
from telepay.bot.ownership import admin_owner
from telepay.bot.setup_view import STATUS
from telepay.errors import CooldownActive, InvalidInput, TelePayError
from telepay.models import ChannelStatus
from telepay.services.broadcasts import request_broadcast
from telepay.services.channels import owned_channel, owner_channels
from telepay.services.posts import deep_link
from telepay.services.summary import channel_summary, render_summary


def _list(session, user_id: int):
    return [(c.id, c.open_title, c.closed_title, c.status) for c in owner_channels(session, user_id)]


async def list_channels(update: Update, context: Context) -> None:
    """`menu:channels`: one button per registered pair."""
    await ack(update)
    pairs = await db(context, _list, update.effective_user.id)
    if not pairs:
        await show(update, "You have no channels yet. Tap “Add channels” to register a pair.",
                   keyboard([("➕ Add channels", "menu:add")], [("« Menu", "menu:home")]))
        return
    rows = [[(f"{'✅' if status == ChannelStatus.ACTIVE else '⚠️'} {open_title} → {closed_title}"[:60], f"ch:{cid}")]
            for cid, open_title, closed_title, status in pairs]
    rows += [[("➕ Add channels", "menu:add"), ("« Menu", "menu:home")]]
    await show(update, "📋 Your channels:", keyboard(*rows))


def _view(session, cid: int, user_id: int):
    channel = owned_channel(session, cid, user_id)
    return channel.key, channel.open_title, channel.closed_title, channel.status, channel.status_reason


async def channel_view(update: Update, context: Context) -> None:
    """`ch:<id>`: the pair's status, its links, and what the owner can do."""
    cid = int(update.callback_query.data.split(":")[1])
    key, open_title, closed_title, status, reason = await db(context, _view, cid, update.effective_user.id)
    await ack(update)
    username = context.services.settings.telegram_bot_username
    lines = [f"“{open_title}” → “{closed_title}”", f"Status: {STATUS[status]}"]
    if reason:
        lines.append(reason)
    lines += ["", "Donation link: " + deep_link(username, key, "donate")]
    await show(update, "\n".join(lines), keyboard(
        [("⚙️ Setup", f"cfg:{cid}"), ("📣 Post now", f"ch:{cid}:post")],
        [("📊 Summary", f"ch:{cid}:sum"), ("« My channels", "menu:channels")],
    ))


def _post_now(session, jobs, cid: int, user_id: int, at) -> None:
    channel = owned_channel(session, cid, user_id)
    if channel.status == ChannelStatus.LOST_RIGHTS:
        raise InvalidInput(f"“{channel.open_title}” is still paused: {channel.status_reason}")
    if channel.status != ChannelStatus.ACTIVE:
        raise InvalidInput("This channel isn't live yet: add at least one tier and a payout address, "
                           "then “Save all changes”.")
    request_broadcast(session, jobs, cid, at)


async def post_now(update: Update, context: Context) -> None:
    """`ch:<id>:post`: queue fresh posts now, unless the channel was posted in the last 5 minutes."""
    cid = int(update.callback_query.data.split(":")[1])
    svc = context.services
    try:
        channel = await admin_owner(update, context, cid)
        if channel.status == ChannelStatus.LOST_RIGHTS:
            await context.rights.check(cid)  # resumes the pair if every right is back
        await db(context, _post_now, svc.jobs, cid, update.effective_user.id, now(context))
    except CooldownActive as cooldown:
        minutes, seconds = divmod(cooldown.retry_after, 60)
        wait = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
        await tell_error(update, TelePayError(
            f"I posted in this channel less than 5 minutes ago. To keep your channel tidy, please try "
            f"again in {wait}."))
        return
    except TelePayError as error:
        await tell_error(update, error)
        return
    svc.wake_worker()
    await ack(update, "📣 Posting now — the new posts will appear in a moment.")


def _summary(session, cid: int, user_id: int, at) -> str:
    channel = owned_channel(session, cid, user_id)
    return render_summary(channel.open_title, channel_summary(session, cid, at))


async def summary(update: Update, context: Context) -> None:
    """`ch:<id>:sum`: the last 30 days in numbers."""
    cid = int(update.callback_query.data.split(":")[1])
    try:
        await admin_owner(update, context, cid)
        text = await db(context, _summary, cid, update.effective_user.id, now(context))
    except TelePayError as error:
        await tell_error(update, error)
        return
    await ack(update)
    await show(update, text, keyboard([("« Back", f"ch:{cid}")]))
