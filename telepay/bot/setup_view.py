"""How the settings form looks: the channel's saved settings with the owner's unsaved edits on top.

Pure rendering: no Telegram calls and no database. Every button's callback data names the
channel and the action (`cfg:<channel id>:<action>...`), so the form works after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from telegram import InlineKeyboardMarkup

from telepay.bot.common import keyboard
from telepay.models import ChannelStatus, PayoutStrategy
from telepay.services.setup import MAX_TIERS, Effective

STATUS = {
    ChannelStatus.SETUP: "not live yet — add a tier and a payout address, then save",
    ChannelStatus.ACTIVE: "live ✅",
    ChannelStatus.LOST_RIGHTS: "⚠️ I lost my admin rights",
    ChannelStatus.DISABLED: "disabled",
}


@dataclass(frozen=True)
class FormData:
    channel_id: int
    open_title: str
    closed_title: str
    status: ChannelStatus
    saved: Effective
    currencies: dict[str, str]  # "code:network" -> label


def tier_values(saved: Effective, draft: dict[str, Any]) -> dict[int, tuple[Decimal | None, int | None] | None]:
    """Each tier as it would be saved; half-entered new tiers show what is known so far."""
    tiers: dict[int, tuple[Decimal | None, int | None] | None] = {}
    for number in range(1, MAX_TIERS + 1):
        base = saved.tiers.get(number)
        edits = draft.get("tiers") or {}
        if str(number) not in edits:
            tiers[number] = base
            continue
        edit = edits[str(number)]
        if edit is None:
            tiers[number] = None
            continue
        price = Decimal(edit["price"]) if edit.get("price") else (base[0] if base else None)
        tiers[number] = (price, edit.get("days") or (base[1] if base else None))
    return tiers


def _tier_label(value) -> str:
    if value is None:
        return "—"
    price, days = value
    return f"{'$' + format(price, ',.2f') if price else '$?'} · {days or '?'} days"


def stars_values(saved: Effective, draft: dict[str, Any]) -> dict[int, int | None]:
    """Each tier's owner-set Stars price as it would be saved (None: follows the USD price)."""
    edits = draft.get("tiers") or {}
    return {n: (edits[str(n)] or {}).get("stars") if "stars" in (edits.get(str(n)) or {}) else saved.stars.get(n)
            for n in range(1, MAX_TIERS + 1)}


def _stars_label(value) -> str:
    return f" · ⭐ {value:,}" if value else " · ⭐ auto"


def render_form(data: FormData, draft: dict[str, Any], note: str = "") -> tuple[str, InlineKeyboardMarkup]:
    saved, cid = data.saved, data.channel_id

    def mark(name: str) -> str:
        return " ✏️" if name in draft else ""

    tiers = tier_values(saved, draft)
    stars = stars_values(saved, draft)
    crypto_on, stars_on = draft.get("accept_crypto", saved.accept_crypto), draft.get("accept_stars", saved.accept_stars)
    currency = draft.get("currency") or (f"{saved.currency}:{saved.network}" if saved.currency else None)
    address = draft.get("address", saved.address)
    strategy = PayoutStrategy(draft.get("strategy", saved.strategy))
    threshold = draft.get("threshold", saved.threshold)
    notify = draft.get("notify", saved.notify)
    target = draft.get("notify_chat_id", saved.notify_chat_id) if "notify_chat_id" in draft else saved.notify_chat_id
    text = draft.get("donation_text", saved.donation_text)
    repost = draft.get("repost_hours", saved.repost_hours)
    how = "instantly, for every payment" if strategy == PayoutStrategy.INSTANT \
        else f"once ${Decimal(threshold or 0):,.2f} has accumulated"
    lines = [
        f"⚙️ “{data.open_title}” → “{data.closed_title}”",
        f"Status: {STATUS[data.status]}",
        "",
        "Tiers" + mark("tiers") + ":",
        *[f"  {n}. {_tier_label(value)}{_stars_label(stars[n]) if value else ''}" for n, value in tiers.items()],
        f"Buyers pay{mark('accept_crypto') or mark('accept_stars')}: "
        + (" and ".join(m for m, on in (("⭐ Telegram Stars", stars_on), ("💳 crypto", crypto_on)) if on) or "—"),
        f"Payout currency{mark('currency')}: {data.currencies.get(currency, '—') if currency else '—'}",
        f"Payout address{mark('address')}: {address or '—'}",
        f"Payouts{mark('strategy') or mark('threshold')}: {how}",
        f"Sale notifications{mark('notify') or mark('notify_chat_id')}: "
        + ("off" if not notify else ("to you here" if not target else f"to chat {target}")),
        f"Donation post{mark('donation_text')}: “{text[:80]}{'…' if len(text) > 80 else ''}”",
        f"Reposts{mark('repost_hours')}: every {repost} hours",
    ]
    if draft:
        lines += ["", "✏️ Unsaved changes — press “Save all changes” to apply them, or “Discard”."]
    if note:
        lines += ["", note]
    rows = [
        [(f"Tier {n}: {_tier_label(value)}", f"cfg:{cid}:t:{n}") for n, value in tiers.items()][:2],
        [(f"Tier 3: {_tier_label(tiers[3])}", f"cfg:{cid}:t:3")],
        [("💱 Currency", f"cfg:{cid}:cur"), ("👛 Address", f"cfg:{cid}:addr")],
        [("📤 Payout strategy", f"cfg:{cid}:strat"), ("🔔 Notifications", f"cfg:{cid}:notify")],
        [("📝 Donation text", f"cfg:{cid}:text"), (f"🔁 Every {repost} h", f"cfg:{cid}:repost")],
        [(f"⭐ Stars: {'on' if stars_on else 'off'}", f"cfg:{cid}:pm:stars"),
         (f"💳 Crypto: {'on' if crypto_on else 'off'}", f"cfg:{cid}:pm:crypto")],
        [("💾 Save all changes", f"cfg:{cid}:save"), ("🗑 Discard", f"cfg:{cid}:discard")] if draft else [],
        [("« My channels", "menu:channels")],
    ]
    return "\n".join(lines), keyboard(*rows)


def tier_menu(cid: int, number: int, value) -> tuple[str, InlineKeyboardMarkup]:
    return (f"Tier {number}: {_tier_label(value)}\n\nWhat would you like to change?",
            keyboard([("Price", f"cfg:{cid}:t:{number}:price"), ("Duration", f"cfg:{cid}:t:{number}:days")],
                     [("⭐ Stars price", f"cfg:{cid}:t:{number}:stars")],
                     [("Remove this tier", f"cfg:{cid}:t:{number}:del")] if value else [],
                     [("« Back", f"cfg:{cid}")]))


def currency_menu(cid: int, currencies: dict[str, str]) -> tuple[str, InlineKeyboardMarkup]:
    rows = [[(label, f"cfg:{cid}:cur:{code}")] for code, label in currencies.items()]
    rows.append([("« Back", f"cfg:{cid}")])
    return "Which currency and network should your payouts be sent in?", keyboard(*rows)


def strategy_menu(cid: int) -> tuple[str, InlineKeyboardMarkup]:
    return ("How should you be paid out?\n\n• Instant: a payout for every payment.\n"
            "• Threshold: your share is held in USD and paid out once it reaches an amount you choose "
            "(at least $20) — fewer, larger payouts with lower network fees.",
            keyboard([("⚡ Instant", f"cfg:{cid}:strat:instant"), ("🎯 Threshold…", f"cfg:{cid}:strat:threshold")],
                     [("« Back", f"cfg:{cid}")]))


def notify_menu(cid: int, on: bool) -> tuple[str, InlineKeyboardMarkup]:
    return ("Do you want a message for every sale and donation, and where?",
            keyboard([("🔕 Turn off" if on else "🔔 Turn on", f"cfg:{cid}:notify:toggle")],
                     [("Send them to me here", f"cfg:{cid}:notify:me"),
                      ("To another chat…", f"cfg:{cid}:notify:chat")],
                     [("« Back", f"cfg:{cid}")]))


def address_confirmation(cid: int, address: str, label: str | None) -> tuple[str, InlineKeyboardMarkup]:
    return (f"🔐 Please confirm your new payout address:\n\n{address}\nNetwork: {label or '—'}\n\n"
            "All payouts will go there from now on. Check every character: crypto sent to a wrong "
            "address cannot be recovered.",
            keyboard([("✅ Yes, save all changes", f"cfg:{cid}:confirm")], [("« Back to the form", f"cfg:{cid}")]))
