"""The sandbox against the Bot API reference: the parameters it reads and the objects it returns."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from telegram import Update

from telepay_sandbox.telegram_params import Args, Param
from telepay_sandbox.telegram_api import SPECS
from telepay_sandbox.telegram_state import MemberStatus

ALL_UPDATES = ["message", "callback_query", "channel_post", "chat_member", "my_chat_member",
               "chat_join_request", "pre_checkout_query"]
# Type-correct stand-ins: a missing-parameter check must fire before any lookup.
SAMPLE_VALUES = {
    "chat_id": 1, "user_id": 1, "text": "x", "message_id": 1, "callback_query_id": "1",
    "invite_link": "https://t.me/+abc", "commands": [{"command": "start", "description": "Start"}],
    "title": "x", "description": "x", "payload": "x", "currency": "XTR",
    "prices": [{"label": "x", "amount": 1}], "pre_checkout_query_id": "1", "ok": True,
    "telegram_payment_charge_id": "x", "is_canceled": True,
}


def test_every_served_method_and_parameter_is_in_the_reference(reference):
    for spec in SPECS.values():
        assert spec.name in reference.methods, f"{spec.name} is not a Bot API method"
        documented = reference.method_fields(spec.name)
        for name, param in spec.params.items():
            assert name in documented, f"{spec.name} reads {name}, which the reference lacks"
            assert list(param.types) == documented[name]["types"], f"{spec.name}.{name} types"
            assert param.required == documented[name]["required"], f"{spec.name}.{name} required"
        for name, field in documented.items():
            if field["required"]:
                assert name in spec.params, f"{spec.name} ignores required {name}"


def test_a_handler_cannot_read_an_undeclared_parameter():
    spec = SPECS["getme"]
    args = Args(spec, {"surprise": 1})
    with pytest.raises(KeyError):
        args.get("surprise")
    assert spec.params == {} and isinstance(Param(("Integer",)), Param)


@pytest.mark.parametrize(
    ("method", "missing"),
    sorted((spec.name, name) for spec in SPECS.values() for name, p in spec.params.items() if p.required),
)
def test_required_parameters_are_enforced(api, method, missing):
    params = {name: value for name, value in SAMPLE_VALUES.items()
              if name in SPECS[method.lower()].params and name != missing}
    answer = api(method, **params)
    assert answer["ok"] is False and answer["error_code"] == 400, answer
    assert answer["description"].startswith("Bad Request: ")
    assert "empty" in answer["description"] or "INVALID" in answer["description"]


def test_unknown_parameters_are_ignored_like_telegram_does(api):
    assert api("getMe", not_a_parameter="whatever")["ok"] is True


def _scenario(sandbox, api, channel, alice):
    """Drive every served method, and every kind of update, once or more."""
    bot = sandbox.bot
    api.result("getMe")
    api.result("deleteWebhook", drop_pending_updates=False)
    api.result("setMyCommands", commands=[{"command": "start", "description": "Start"}])
    api.result("getMyCommands")
    api.result("setMyCommands", commands=[{"command": "help", "description": "Help"}],
               scope={"type": "all_private_chats"}, language_code="en")
    api.result("deleteMyCommands", scope={"type": "all_private_chats"}, language_code="en")
    api.result("getUpdates", allowed_updates=ALL_UPDATES)

    first = alice.messages() and alice.messages()[0]
    keyboard = {"inline_keyboard": [
        [{"text": "Pay", "web_app": {"url": "https://pay.example/invoice/1"}}],
        [{"text": "Site", "url": "https://example.com"}, {"text": "Next", "callback_data": "next"}],
    ]}
    sent = api.result("sendMessage", chat_id=alice.id, text="<b>Hello</b> there", parse_mode="HTML",
                      reply_markup=keyboard, reply_parameters={"message_id": 1})
    assert not first
    message = alice.wait_for_message()
    query = alice.press(message, callback_data="next")
    api.result("answerCallbackQuery", callback_query_id=query.id, text="Working")
    api.result("editMessageText", chat_id=alice.id, message_id=sent["message_id"], text="Edited",
               reply_markup={"inline_keyboard": [[{"text": "Again", "callback_data": "again"}]]})
    api.result("editMessageReplyMarkup", chat_id=alice.id, message_id=sent["message_id"])
    doomed = api.result("sendMessage", chat_id=alice.id, text="bye")
    api.result("deleteMessage", chat_id=alice.id, message_id=doomed["message_id"])

    post = api.result("sendMessage", chat_id=channel.id, text="Tiers")
    owner_post = channel.post("Owner's post")
    alice.forward_to_bot(owner_post)
    api.result("getChat", chat_id=channel.id)
    api.result("getChat", chat_id=alice.id)
    api.result("getChatMemberCount", chat_id=channel.id)
    api.result("getChatAdministrators", chat_id=channel.id)
    for user in (bot, alice):
        api.result("getChatMember", chat_id=channel.id, user_id=user.id)
    assert post["sender_chat"]["id"] == channel.id

    requests = api.result("createChatInviteLink", chat_id=channel.id, name="paid",
                          creates_join_request=True, expire_date=sandbox.now() + 3600)
    bob, carol, dave = (sandbox.create_user(name) for name in ("Bob", "Carol", "Dave"))
    assert bob.join(requests["invite_link"]) == "requested"
    assert carol.join(requests["invite_link"]) == "requested"
    api.result("approveChatJoinRequest", chat_id=channel.id, user_id=bob.id)
    api.result("declineChatJoinRequest", chat_id=channel.id, user_id=carol.id)
    limited = api.result("createChatInviteLink", chat_id=channel.id, member_limit=1)
    assert dave.join(limited["invite_link"]) == "joined"
    api.result("revokeChatInviteLink", chat_id=channel.id, invite_link=limited["invite_link"])
    api.result("banChatMember", chat_id=channel.id, user_id=dave.id, until_date=sandbox.now() + 3600)
    api.result("getChatMember", chat_id=channel.id, user_id=dave.id)
    api.result("unbanChatMember", chat_id=channel.id, user_id=dave.id)
    api.result("getChatMember", chat_id=channel.id, user_id=dave.id)
    sandbox.set_member_status(channel, carol, MemberStatus.RESTRICTED, can_send_messages=True)
    api.result("getChatMember", chat_id=channel.id, user_id=carol.id)
    api.result("getChatMember", chat_id=channel.id, user_id=channel.owner.id)

    group = sandbox.create_supergroup("Chat", username="club_chat")
    sandbox.add_admin(group, bot)
    sandbox.add_admin(group, bob)
    group.post("hi /help", author=bob)
    api.result("getChat", chat_id="@club_chat")
    api.result("getChatAdministrators", chat_id=group.id)
    alice.block_bot()
    alice.unblock_bot()
    api.result("getChatMember", chat_id=alice.id, user_id=bot.id)
    _stars_scenario(sandbox, api, alice)
    api.result("getUpdates", offset=-100)


def pay_answering(sandbox, api, person, target, **answer):
    """`person` pays `target` while the bot answers the pre-checkout query (ok=True unless told)."""
    seen = len(sandbox.updates)
    with ThreadPoolExecutor(1) as pool:
        paying = pool.submit(person.pay, target)
        query = wait_for_update(sandbox, "pre_checkout_query", seen)
        api.result("answerPreCheckoutQuery", pre_checkout_query_id=query["id"], **({"ok": True} | answer))
        return paying.result(timeout=5)


def wait_for_update(sandbox, kind, seen=0, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for update in sandbox.updates[seen:]:
            if kind in update:
                return update[kind]
        time.sleep(0.01)
    raise TimeoutError(f"no {kind} update")


def _stars_scenario(sandbox, api, alice):
    """An invoice, a subscription link, both paid; a refund, a cancelled renewal, the ledger."""
    alice.stars = 1000
    price = [{"label": "30 days", "amount": 250}]
    invoice = api.result("sendInvoice", chat_id=alice.id, title="Closed Club", description="30 days",
                         payload="tier-1", currency="XTR", prices=price)
    link = api.result("createInvoiceLink", title="Closed Club", description="Every 30 days",
                      payload="sub-1", currency="XTR", prices=price, subscription_period=2592000)
    once = pay_answering(sandbox, api, alice, _handle(sandbox, alice, invoice))
    monthly = pay_answering(sandbox, api, alice, link)
    assert once.paid and monthly.paid
    api.result("refundStarPayment", user_id=alice.id, telegram_payment_charge_id=once.charge_id)
    api.result("editUserStarSubscription", user_id=alice.id, telegram_payment_charge_id=monthly.charge_id,
               is_canceled=True)
    assert len(api.result("getStarTransactions", offset=0, limit=10)["transactions"]) == 3
    assert api.result("getMyStarBalance") == {"amount": 250}


def _handle(sandbox, person, message):
    return next(m for m in person.messages() if m.message_id == message["message_id"])


def test_every_answer_and_update_matches_the_reference(sandbox, api, channel, alice, reference):
    _scenario(sandbox, api, channel, alice)

    served = {spec.name for spec in SPECS.values()}
    succeeded = {call.method for call in sandbox.calls if call.ok}
    assert served <= succeeded, f"scenario misses {served - succeeded}"
    problems = []
    for call in sandbox.calls:
        assert call.ok, (call.method, call.response)
        problems += reference.problems(call.result, reference.methods[call.method]["returns"],
                                       f"{call.method}")
    kinds = set()
    for update in sandbox.updates:
        problems += reference.problems(update, ["Update"], f"update {update['update_id']}")
        kinds |= set(update) - {"update_id"}
    assert problems == []
    assert kinds == set(ALL_UPDATES)


def test_python_telegram_bot_parses_every_update_without_leftovers(sandbox, api, channel, alice):
    _scenario(sandbox, api, channel, alice)
    for update in sandbox.updates:
        assert Update.de_json(update, None).api_kwargs == {}, update


def test_the_oracle_itself_catches_bad_shapes(reference):
    good = {"id": 1, "is_bot": False, "first_name": "A"}
    assert reference.problems(good, ["User"]) == []
    assert reference.problems({"id": "1", "is_bot": False, "first_name": "A"}, ["User"])
    assert reference.problems({"id": 1, "is_bot": False}, ["User"])
    assert reference.problems({**good, "nickname": "x"}, ["User"])
    chat = {"id": -1, "type": "channel"}
    banned = {"status": "kicked", "user": good, "until_date": 0}
    assert reference.problems(banned, ["ChatMember"]) == []
    assert reference.problems({**banned, "status": "creator"}, ["ChatMember"])
    origin = {"type": "channel", "date": 1, "chat": chat, "message_id": 5}
    assert reference.problems(origin, ["MessageOrigin"]) == []
    assert reference.problems({**origin, "type": "user"}, ["MessageOrigin"])
