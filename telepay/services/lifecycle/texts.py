"""What subscribers, owners and operators are told about the end of a subscription."""

from __future__ import annotations

from datetime import datetime, timedelta

RENEW_LABEL = "🔄 Renew"


def renew_button(channel_key: str) -> tuple[str, str]:
    """(label, callback data): `buy:<key>` opens the channel's plans, then the usual invoice."""
    return RENEW_LABEL, f"buy:{channel_key}"


def time_left(left: timedelta) -> str:
    """A rough, friendly length: "3 days", "1 day", "5 hours", "10 minutes".

    Hours that round to a whole day are a day: the one-day reminder goes out a sweep after the
    mark, a few seconds short of 24 hours, and should say "1 day" as the three-day one says "3 days"."""
    seconds = max(int(left.total_seconds()), 60)
    if seconds >= 86400 or round(seconds / 3600) >= 24:
        count, unit = round(seconds / 86400), "day"
    elif seconds >= 3600:
        count, unit = round(seconds / 3600), "hour"
    else:
        count, unit = seconds // 60, "minute"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def reminder(title: str, expires_at: datetime, left: timedelta) -> str:
    return (f"⏳ Your access to “{title}” ends in {time_left(left)}, on {expires_at:%d %b %Y at %H:%M} UTC.\n\n"
            "Tap “Renew” to add more time. It is added to what you have left, so renewing early "
            "costs you nothing.")


def ended(title: str) -> str:
    return (f"⌛ Your access to “{title}” has ended, and you have been removed from the channel.\n\n"
            "Thank you for being a member! Tap “Renew” to pick a plan and come back: your new "
            "invite link arrives here as soon as the payment is confirmed.")
