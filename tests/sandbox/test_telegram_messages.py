"""Sending, editing and deleting messages; buttons; people's side of a private chat."""

from __future__ import annotations

import pytest

CALLBACK = {"inline_keyboard": [[{"text": "Buy", "callback_data": "buy:1"}]]}


def test_blocked_bot_gets_403_until_unblocked(sandbox, api, alice):
    alice.block_bot()
    answer = api("sendMessage", chat_id=alice.id, text="Renew?")
    assert answer == {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
    assert api.result("getChatMember", chat_id=alice.id, user_id=sandbox.bot.id)["status"] == "kicked"
    with pytest.raises(RuntimeError):
        alice.send("hello")  # the client wants the bot unblocked first
    alice.unblock_bot()
    assert api("sendMessage", chat_id=alice.id, text="Renew?")["ok"] is True
    changes = [u["my_chat_member"]["new_chat_member"]["status"]
               for u in sandbox.updates if "my_chat_member" in u]
    assert changes == ["kicked", "member"]


def test_unknown_chats_and_bots_cannot_be_messaged(sandbox, api):
    assert api("sendMessage", chat_id=123, text="x")["description"] == "Bad Request: chat not found"
    assert api("sendMessage", chat_id="@alice", text="x")["description"] == "Bad Request: chat not found"
    assert api("sendMessage", chat_id=sandbox.bot.id, text="x")["description"] == (
        "Forbidden: bot can't send messages to bots")


def test_web_app_buttons_only_in_private_chats(api, alice, channel):
    web_app = {"inline_keyboard": [[{"text": "Pay", "web_app": {"url": "https://pay.example/i/1"}}]]}
    assert api("sendMessage", chat_id=alice.id, text="Pay", reply_markup=web_app)["ok"] is True
    refused = api("sendMessage", chat_id=channel.id, text="Pay", reply_markup=web_app)
    assert refused == {"ok": False, "error_code": 400, "description": "Bad Request: BUTTON_TYPE_INVALID"}
    plain_http = {"inline_keyboard": [[{"text": "Pay", "web_app": {"url": "http://127.0.0.1/i/1"}}]]}
    assert "Only HTTPS links are allowed" in api("sendMessage", chat_id=alice.id, text="Pay",
                                                 reply_markup=plain_http)["description"]


@pytest.mark.parametrize(
    ("text", "markup", "description"),
    [
        ("", None, "Bad Request: message text is empty"),
        ("   ", None, "Bad Request: message text is empty"),
        ("x" * 4097, None, "Bad Request: message is too long"),
        ("ok", {"inline_keyboard": [[{"text": "a", "callback_data": "x" * 65}]]},
         "Bad Request: BUTTON_DATA_INVALID"),
        ("ok", {"inline_keyboard": [[{"text": "a", "callback_data": ""}]]},
         "Bad Request: BUTTON_DATA_INVALID"),
        ("ok", {"inline_keyboard": [[{"text": "plain"}]]},
         "Bad Request: can't parse inline keyboard button: "
         "Text buttons are unallowed in the inline keyboard"),
        ("ok", {"inline_keyboard": [{"text": "a", "url": "https://x.org"}]},
         'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'),
    ],
)
def test_send_message_validation(api, alice, text, markup, description):
    params = {"chat_id": alice.id, "text": text, **({"reply_markup": markup} if markup else {})}
    answer = api("sendMessage", **params)
    assert (answer["error_code"], answer["description"]) == (400, description)


def test_text_limit_counts_utf16_and_64_byte_callback_data_fits(api, alice):
    assert api("sendMessage", chat_id=alice.id, text="x" * 4096)["ok"] is True
    emoji = api("sendMessage", chat_id=alice.id, text="😀" * 2049)  # 4098 UTF-16 units
    assert emoji["description"] == "Bad Request: message is too long"
    fits = {"inline_keyboard": [[{"text": "a", "callback_data": "é" * 32}]]}
    assert api("sendMessage", chat_id=alice.id, text="ok", reply_markup=fits)["ok"] is True


def test_channel_posts_need_post_rights(sandbox, api):
    chat = sandbox.create_channel("Announcements", username="announcements")
    assert api("sendMessage", chat_id="@announcements", text="x")["description"] == (
        "Forbidden: bot is not a member of the channel chat")
    sandbox.add_admin(chat, sandbox.bot, can_post_messages=False)
    answer = api("sendMessage", chat_id=chat.id, text="x")
    assert answer == {"ok": False, "error_code": 400,
                      "description": "Bad Request: need administrator rights in the channel chat"}
    sandbox.add_admin(chat, sandbox.bot)
    post = api.result("sendMessage", chat_id="@announcements", text="Tiers", reply_markup=CALLBACK)
    assert post["chat"]["id"] == chat.id and "from" not in post
    assert [m.text for m in sandbox.chat_messages(chat)] == ["Tiers"]


def test_parse_modes_become_entities_or_are_refused(api, alice):
    html = api.result("sendMessage", chat_id=alice.id, parse_mode="HTML",
                      text="<b>Gold</b> &amp; <a href='https://x.org'>more</a>")
    assert html["text"] == "Gold & more"
    assert html["entities"] == [{"type": "bold", "offset": 0, "length": 4},
                                {"type": "text_link", "offset": 7, "length": 4, "url": "https://x.org"}]
    bad_html = api("sendMessage", chat_id=alice.id, text="Hi <Alice>", parse_mode="HTML")
    assert bad_html["description"] == (
        'Bad Request: can\'t parse entities: Unsupported start tag "alice" at byte offset 3')
    price = api("sendMessage", chat_id=alice.id, text="*Gold*: $4.99", parse_mode="MarkdownV2")
    assert price["description"] == ("Bad Request: can't parse entities: Character '.' is reserved "
                                    "and must be escaped with the preceding '\\'")
    escaped = api.result("sendMessage", chat_id=alice.id, text="*Gold*: $4\\.99", parse_mode="MarkdownV2")
    assert escaped["text"] == "Gold: $4.99"
    assert escaped["entities"] == [{"type": "bold", "offset": 0, "length": 4}]


def test_edits_follow_telegram_rules(sandbox, api, alice):
    sent = api.result("sendMessage", chat_id=alice.id, text="Pick", reply_markup=CALLBACK)
    ids = {"chat_id": alice.id, "message_id": sent["message_id"]}
    same = api("editMessageText", text="Pick", reply_markup=CALLBACK, **ids)
    assert same["description"].startswith("Bad Request: message is not modified: ")
    edited = api.result("editMessageText", text="Picked", **ids)
    assert "reply_markup" not in edited and edited["edit_date"] >= sent["date"]  # no markup: keyboard gone
    unchanged = api("editMessageReplyMarkup", **ids)
    assert unchanged["description"].startswith("Bad Request: message is not modified")
    restored = api.result("editMessageReplyMarkup", reply_markup=CALLBACK, **ids)
    assert restored["reply_markup"] == CALLBACK
    theirs = alice.send("hello")
    answer = api("editMessageText", chat_id=alice.id, message_id=theirs.message_id, text="hacked")
    assert answer["description"] == "Bad Request: message can't be edited"
    missing = api("editMessageText", chat_id=alice.id, message_id=999, text="x")
    assert missing["description"] == "Bad Request: message to edit not found"


def test_delete_message(api, alice):
    sent = api.result("sendMessage", chat_id=alice.id, text="temporary")
    assert api.result("deleteMessage", chat_id=alice.id, message_id=sent["message_id"]) is True
    again = api("deleteMessage", chat_id=alice.id, message_id=sent["message_id"])
    assert again["description"] == "Bad Request: message to delete not found"
    assert alice.messages() == []


def test_buttons_from_the_persons_side(sandbox, api, alice):
    keyboard = {"inline_keyboard": [
        [{"text": "Site", "url": "https://example.com/x"}],
        [{"text": "Buy", "callback_data": "buy:1"}],
    ]}
    api.result("sendMessage", chat_id=alice.id, text="Choose", reply_markup=keyboard)
    message = alice.wait_for_message()
    assert alice.press(message, text="Site") == "https://example.com/x"  # handled by the client
    query = alice.press(message, callback_data="buy:1")
    update = sandbox.pending_updates[-1]["callback_query"]
    assert update["id"] == query.id and update["data"] == "buy:1"
    assert update["message"]["message_id"] == message.message_id
    assert update["from"]["id"] == alice.id and update["chat_instance"]
    with pytest.raises(LookupError):
        alice.press(message, text="Nope")

    api.result("answerCallbackQuery", callback_query_id=query.id, text="Creating invoice")
    assert query.answer["text"] == "Creating invoice"
    twice = api("answerCallbackQuery", callback_query_id=query.id)
    assert twice["description"] == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid")


def test_commands_deep_links_and_forwards(sandbox, alice, channel):
    message = alice.open_deep_link(f"https://t.me/{sandbox.bot.username}?start=ch42_t1")
    assert message.text == "/start ch42_t1"
    assert message.entities == [{"type": "bot_command", "offset": 0, "length": 6}]
    bad = alice.open_deep_link(f"https://t.me/{sandbox.bot.username}?start=bad%20payload!")
    assert bad.text == "/start"  # clients drop a malformed start parameter
    with pytest.raises(ValueError):
        alice.open_deep_link("https://t.me/some_other_bot?start=x")

    post = channel.post("Gold tier: $5")
    forwarded = alice.forward_to_bot(post)
    origin = sandbox.updates[-1]["message"]["forward_origin"]
    assert origin == {"type": "channel", "date": post.date, "message_id": post.message_id,
                      "chat": {"id": channel.id, "type": "channel", "title": channel.title}}
    assert forwarded.text == "Gold tier: $5"


def test_wait_for_message_reads_on_from_the_last_match(api, alice):
    for text in ("one", "two", "three"):
        api.result("sendMessage", chat_id=alice.id, text=text)
    assert alice.wait_for_message(lambda m: m.text == "two").text == "two"
    assert alice.wait_for_message().text == "three"
    with pytest.raises(TimeoutError):
        alice.wait_for_message(timeout=0.1)
    assert [m.text for m in alice.messages()] == ["one", "two", "three"]


def test_commands_are_stored_per_scope(api):
    api.result("setMyCommands", commands=[{"command": "start", "description": "Start"}])
    private = {"type": "all_private_chats"}
    api.result("setMyCommands", commands=[{"command": "buy", "description": "Buy"}], scope=private)
    assert api.result("getMyCommands") == [{"command": "start", "description": "Start"}]
    assert api.result("getMyCommands", scope=private) == [{"command": "buy", "description": "Buy"}]
    bad = api("setMyCommands", commands=[{"command": "Start!", "description": "x"}])
    assert bad["description"] == "Bad Request: BOT_COMMAND_INVALID"
