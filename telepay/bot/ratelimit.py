"""The bot's outbound pacing: PTB's AIORateLimiter, applied to what Telegram's flood limits are
about — messages.

AIORateLimiter paces every call that names a chat, and paces calls on a negative chat id (a
group or channel) at 20 per minute. That is Telegram's guidance for *messages* in a group; applied
to `banChatMember`/`unbanChatMember` it would let the expiry sweep remove only ten subscribers a
minute from a channel. So only sending and editing messages is paced (about 30/s overall, 20/min
per group); every call, paced or not, still waits out a 429's `retry_after` and is retried.
"""

from __future__ import annotations

from typing import Any

from telegram.ext import AIORateLimiter

# Bot API methods that post or change a message in a chat.
MESSAGE_METHODS = frozenset({
    "sendMessage", "sendPhoto", "sendAudio", "sendDocument", "sendVideo", "sendAnimation", "sendVoice",
    "sendVideoNote", "sendMediaGroup", "sendLocation", "sendVenue", "sendContact", "sendPoll", "sendDice",
    "sendSticker", "sendInvoice", "sendPaidMedia", "copyMessage", "copyMessages", "forwardMessage",
    "forwardMessages", "editMessageText", "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup",
})


EDIT_METHODS = frozenset({"editMessageText", "editMessageCaption", "editMessageMedia", "editMessageReplyMarkup"})


def _private(chat_id: Any) -> bool:
    try:
        return int(chat_id) > 0
    except (TypeError, ValueError):
        return False  # an @username is a public chat


class MessageRateLimiter(AIORateLimiter):
    async def process_request(self, callback, args, kwargs, endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None):
        # An edit in a private chat answers a button the person just pressed (the donation
        # keypad): Telegram's 30/s is about bulk messages, and spending it on edits capped the
        # whole bot at ~29 key presses a second across all users. Those edits are not paced;
        # a 429, should one come, is still waited out and retried.
        if endpoint not in MESSAGE_METHODS or (endpoint in EDIT_METHODS and _private(data.get("chat_id"))):
            # AIORateLimiter keys its pacing on chat_id alone; this copy only steers the limiter
            # (the request itself is sent from `args`), so without it only the 429 retries apply.
            data = {key: value for key, value in data.items() if key != "chat_id"}
        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


def outbound_limiter() -> MessageRateLimiter:
    """The pacing of every `Bot` the process sends through (the poller's and a worker's).

    28/s, not 30: at exactly Telegram's rate, timing jitter earns 429s, and each pauses every call.
    Each process paces itself: N processes sending at once can together exceed Telegram's limit;
    then the 429s' `retry_after` is waited out and the call retried (3 times).
    """
    return MessageRateLimiter(overall_max_rate=28, max_retries=3)
