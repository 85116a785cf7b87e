"""Per-person limits on the bot's costly actions, each refused with a polite message.

Creating an invoice calls the payment provider, "Get my invite" makes and revokes invite links,
and a keypad confirm starts an invoice: one person pressing these as fast as they can must not
queue work for everybody (40 invoices in 14 s were seen). Each action has its own token bucket
per user (`TokenBucketLimiter`: a burst, then a steady rate), in memory: the bot runs as one
process, and a restart forgetting the buckets only gives everyone a fresh burst.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Update
from telegram.error import BadRequest

from telepay.security.ratelimit import TokenBucketLimiter

INVOICE, INVITE, CONFIRM = "invoice", "invite", "confirm"


@dataclass(frozen=True)
class Budget:
    per_minute: float
    burst: int


BUDGETS = {
    INVOICE: Budget(per_minute=5, burst=5),      # "Pay", "Try again" and donations alike
    INVITE: Budget(per_minute=0.5, burst=3),     # a fresh link every two minutes after three
    CONFIRM: Budget(per_minute=5, burst=5),      # the donation keypad's Confirm
}

WHAT = {INVOICE: "new invoices", INVITE: "new invite links", CONFIRM: "confirmations"}


class UserLimits:
    def __init__(self, budgets: dict[str, Budget] | None = None):
        self.limiters = {action: TokenBucketLimiter(b.per_minute, b.burst, max_keys=50_000)
                         for action, b in (budgets or BUDGETS).items()}

    def take(self, action: str, user_id: int) -> int:
        """0 if `user_id` may do `action` now (and it is counted), else seconds to wait."""
        allowed, retry_after = self.limiters[action].hit(user_id)
        return 0 if allowed else retry_after


def refusal(action: str, wait_seconds: int) -> str:
    wait = f"{wait_seconds} seconds" if wait_seconds < 120 else f"{(wait_seconds + 59) // 60} minutes"
    return (f"You've asked for several {WHAT[action]} in a short time. Please wait {wait} and try "
            "again — nothing was lost.")


async def allowed(update: Update, limits: UserLimits, action: str) -> bool:
    """Count the action for the user; if over the limit, say so politely and return False."""
    wait = limits.take(action, update.effective_user.id)
    if not wait:
        return True
    text = refusal(action, wait)
    if update.callback_query is not None:
        try:
            await update.callback_query.answer(text, show_alert=True)
            return False
        except BadRequest:
            pass  # already answered: say it in the chat
    await update.effective_chat.send_message(text)
    return False
