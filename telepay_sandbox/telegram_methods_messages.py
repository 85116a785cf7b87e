"""Bot API methods about the bot itself, updates and messages.

getMe, deleteWebhook, getUpdates, sendMessage, editMessageText, editMessageReplyMarkup,
deleteMessage, answerCallbackQuery, setMyCommands, getMyCommands, deleteMyCommands.
Each handler runs with the world lock held and returns the `result` or raises `ApiError`.
"""

from __future__ import annotations

import re

from telepay_sandbox import telegram_render as render
from telepay_sandbox.telegram_params import (
    BOOLEAN, CHAT_ID, INTEGER, STRING, ApiError, Args, Param, api_method, bad_request, forbidden,
)
from telepay_sandbox.telegram_state import ChatRecord, ChatType, MemberStatus, MessageRecord, World
from telepay_sandbox.telegram_text import format_text, utf16_len
from telepay_sandbox.telegram_updates import PollConflict

MAX_TEXT = 4096
DELETE_WINDOW_SECONDS = 48 * 3600
REPLY_MARKUP = ("InlineKeyboardMarkup", "ReplyKeyboardMarkup", "ReplyKeyboardRemove", "ForceReply")
INLINE_MARKUP = ("InlineKeyboardMarkup",)
SCOPE = ("BotCommandScope",)
BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)


def resolve_chat(world: World, chat_id: int | str) -> ChatRecord:
    """The chat a chat_id names; a known user's id names their private chat with the bot."""
    where = world.find_chat(chat_id)
    if where is None and isinstance(chat_id, int) and chat_id in world.users:
        where = world.private_chat(world.users[chat_id])
    if where is None:
        raise bad_request("chat not found")
    return where


def check_can_send(world: World, where: ChatRecord) -> None:
    if where.type == ChatType.PRIVATE:
        person = world.users[where.id]
        if person.is_bot:
            raise forbidden("bot can't send messages to bots")
        if person.blocked_bot:
            raise forbidden("bot was blocked by the user")
        if not person.started_bot and not _recent_join_request(world, person.id):
            raise forbidden("bot can't initiate conversation with a user")
        return
    kind = "channel" if where.type == ChatType.CHANNEL else where.type.value
    member = world.member(where, world.bot.id)
    if member.status == MemberStatus.KICKED:
        raise forbidden(f"bot was kicked from the {kind} chat")
    if not world.is_in_chat(where, world.bot.id):
        raise forbidden(f"bot is not a member of the {kind} chat")
    if where.type == ChatType.CHANNEL and not world.has_right(where, world.bot.id, "can_post_messages"):
        raise bad_request("need administrator rights in the channel chat")
    if member.status == MemberStatus.RESTRICTED and not member.rights.get("can_send_messages"):
        raise bad_request("not enough rights to send text messages to the chat")


def _recent_join_request(world: World, user_id: int) -> bool:
    # A pending join request lets the bot write to the requester for 5 minutes.
    return any(
        request.user_id == user_id and world.now() - request.date <= 300
        for where in world.chats.values() for request in where.join_requests.values()
    )


def check_reply_markup(markup: dict | None, where: ChatRecord) -> dict | None:
    if markup is None or "inline_keyboard" not in markup:
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
        actions = [name for name in BUTTON_ACTIONS if name in button]
        if not actions:
            raise bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
        if "callback_data" in button and not 1 <= len(str(button["callback_data"]).encode()) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
        if "web_app" in button:
            if where.type != ChatType.PRIVATE:
                raise bad_request("BUTTON_TYPE_INVALID")
            url = (button["web_app"] or {}).get("url", "")
            if not url.startswith("https://"):
                raise bad_request(
                    f"inline keyboard button Web App URL '{url}' is invalid: Only HTTPS links are allowed")
        if "url" in button and not re.match(r"(https?|tg)://\S+$", str(button["url"])):
            # Unconfirmed wording; Telegram accepts only HTTP(S) and tg:// button links.
            raise bad_request(
                f"inline keyboard button URL '{button['url']}' is invalid: Unsupported URL protocol")
    return markup


def _message_text(args: Args) -> tuple[str, list[dict]]:
    text, entities = format_text(args["text"], args.get("parse_mode"), args.get("entities"))
    if not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise bad_request("message is too long")
    return text, entities


@api_method("getMe")
def get_me(world: World, args: Args) -> dict:
    return render.bot_user(world.bot)


@api_method("deleteWebhook", drop_pending_updates=Param(BOOLEAN))
def delete_webhook(world: World, args: Args) -> bool:
    if args.get("drop_pending_updates"):
        world.updates.drop_pending()
    return True


@api_method(
    "getUpdates", offset=Param(INTEGER), limit=Param(INTEGER), timeout=Param(INTEGER),
    allowed_updates=Param(("Array of String",)),
)
def get_updates(world: World, args: Args) -> list[dict]:
    world.updates.set_allowed(args.get("allowed_updates"))
    # Unconfirmed: Telegram appears to clamp limit into 1-100 rather than reject it.
    limit = min(100, max(1, args.get("limit", 100)))
    timeout = min(50, max(0, args.get("timeout", 0)))
    try:
        return world.updates.fetch(args.get("offset", 0), limit, timeout, lambda: world.stopping)
    except PollConflict:
        raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                            "make sure that only one bot instance is running") from None


@api_method(
    "sendMessage", chat_id=Param(CHAT_ID, True), text=Param(STRING, True),
    parse_mode=Param(STRING), entities=Param(("Array of MessageEntity",)),
    link_preview_options=Param(("LinkPreviewOptions",)), disable_notification=Param(BOOLEAN),
    protect_content=Param(BOOLEAN), reply_parameters=Param(("ReplyParameters",)),
    reply_markup=Param(REPLY_MARKUP),
)
def send_message(world: World, args: Args) -> dict:
    where = resolve_chat(world, args["chat_id"])
    check_can_send(world, where)
    text, entities = _message_text(args)
    markup = check_reply_markup(args.get("reply_markup"), where)
    reply_to = None
    if args.get("reply_parameters"):
        reply_to = args["reply_parameters"].get("message_id")
        replied = where.messages.get(reply_to)
        lenient = args["reply_parameters"].get("allow_sending_without_reply")
        if (replied is None or replied.deleted) and not lenient:
            raise bad_request("message to be replied not found")
    wait = world.limiter.retry_after(where.id, where.type == ChatType.PRIVATE)
    if wait is not None:
        raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
    message = world.add_message(
        where, text, world.bot.id, entities=entities, reply_markup=markup,
        reply_to_message_id=reply_to,
    )
    world.notify()
    return render.message(world, message)


def _own_message(world: World, args: Args, action: str) -> MessageRecord:
    if args.get("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")  # inline mode is not emulated
    if args.get("chat_id") is None or args.get("message_id") is None:
        raise bad_request("message identifier is not specified")
    where = resolve_chat(world, args["chat_id"])
    message = where.messages.get(args["message_id"])
    if message is None or message.deleted:
        raise bad_request(f"message to {action} not found")
    if message.sender_id != world.bot.id:
        raise bad_request("message can't be edited")
    return message


def _apply_edit(world: World, message: MessageRecord, text: str, entities: list, markup: dict | None) -> dict:
    # Omitting reply_markup in an edit removes the keyboard, as on Telegram.
    if (text, entities, markup) == (message.text, message.entities, message.reply_markup):
        raise bad_request(_NOT_MODIFIED)
    message.text, message.entities, message.reply_markup = text, entities, markup
    message.edit_date = world.now()
    world.notify()
    return render.message(world, message)


@api_method(
    "editMessageText", chat_id=Param(CHAT_ID), message_id=Param(INTEGER),
    inline_message_id=Param(STRING), text=Param(STRING), parse_mode=Param(STRING),
    entities=Param(("Array of MessageEntity",)), link_preview_options=Param(("LinkPreviewOptions",)),
    reply_markup=Param(INLINE_MARKUP),
)
def edit_message_text(world: World, args: Args) -> dict:
    message = _own_message(world, args, "edit")
    if args.get("text") is None:
        raise bad_request("message text is empty")
    text, entities = _message_text(args)
    markup = check_reply_markup(args.get("reply_markup"), world.chats[message.chat_id])
    return _apply_edit(world, message, text, entities, markup)


@api_method(
    "editMessageReplyMarkup", chat_id=Param(CHAT_ID), message_id=Param(INTEGER),
    inline_message_id=Param(STRING), reply_markup=Param(INLINE_MARKUP),
)
def edit_message_reply_markup(world: World, args: Args) -> dict:
    message = _own_message(world, args, "edit")
    markup = check_reply_markup(args.get("reply_markup"), world.chats[message.chat_id])
    return _apply_edit(world, message, message.text, message.entities, markup)


@api_method("deleteMessage", chat_id=Param(CHAT_ID, True), message_id=Param(INTEGER, True))
def delete_message(world: World, args: Args) -> bool:
    where = resolve_chat(world, args["chat_id"])
    message = where.messages.get(args["message_id"])
    if message is None or message.deleted:
        raise bad_request("message to delete not found")
    own = message.sender_id == world.bot.id
    if where.type == ChatType.PRIVATE:
        allowed = True
    elif where.type == ChatType.CHANNEL and own:
        allowed = world.has_right(where, world.bot.id, "can_post_messages")
    else:
        allowed = own or world.has_right(where, world.bot.id, "can_delete_messages")
    if not allowed or world.now() - message.date > DELETE_WINDOW_SECONDS:
        raise bad_request("message can't be deleted")
    message.deleted = True
    world.notify()
    return True


@api_method(
    "answerCallbackQuery", callback_query_id=Param(STRING, True), text=Param(STRING),
    show_alert=Param(BOOLEAN), url=Param(STRING), cache_time=Param(INTEGER),
)
def answer_callback_query(world: World, args: Args) -> bool:
    query = world.callback_queries.get(args["callback_query_id"])
    if query is None or query.answer is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    if len(args.get("text", "")) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    url = args.get("url")
    # Outside games, only links that open this bot with a start parameter are accepted.
    if url and not re.match(rf"https://t\.me/{re.escape(world.bot.username)}\?start=", url, re.I):
        raise bad_request("URL_INVALID")
    query.answer = {
        "text": args.get("text"), "show_alert": args.get("show_alert", False), "url": url,
        "cache_time": args.get("cache_time", 0),
    }
    world.notify()
    return True


def _scope_key(args: Args) -> str:
    scope = args.get("scope") or {"type": "default"}
    parts = (scope.get("type"), scope.get("chat_id", ""), scope.get("user_id", ""),
             args.get("language_code", ""))
    return ":".join(str(part) for part in parts)


@api_method(
    "setMyCommands", commands=Param(("Array of BotCommand",), True), scope=Param(SCOPE),
    language_code=Param(STRING),
)
def set_my_commands(world: World, args: Args) -> bool:
    commands = args["commands"]
    if len(commands) > 100:
        raise bad_request("too many commands specified")
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND.fullmatch(str(command.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            problem = "too long" if command.get("description") else "empty"
            raise bad_request(f"command description is {problem}")
    world.commands[_scope_key(args)] = [
        {"command": c["command"], "description": c["description"]} for c in commands
    ]
    return True


@api_method("getMyCommands", scope=Param(SCOPE), language_code=Param(STRING))
def get_my_commands(world: World, args: Args) -> list[dict]:
    return list(world.commands.get(_scope_key(args), []))


@api_method("deleteMyCommands", scope=Param(SCOPE), language_code=Param(STRING))
def delete_my_commands(world: World, args: Args) -> bool:
    world.commands.pop(_scope_key(args), None)
    return True


METHODS = (
    get_me, delete_webhook, get_updates, send_message, edit_message_text,
    edit_message_reply_markup, delete_message, answer_callback_query, set_my_commands,
    get_my_commands, delete_my_commands,
)
