"""getUpdates: ordering, offsets, limits, allowed_updates, long polls and conflicts."""

from __future__ import annotations

import threading
import time

from tests.sandbox.conftest import RawBotApi


def _ids(updates):
    return [update["update_id"] for update in updates]


def test_updates_stay_until_a_higher_offset_confirms_them(sandbox, api):
    alice = sandbox.create_user("Alice")
    for text in ("one", "two", "three"):
        alice.send(text)
    first = api.result("getUpdates")
    ids = _ids(first)
    assert [u["message"]["text"] for u in first] == ["one", "two", "three"]
    assert ids == sorted(ids) and ids[1] == ids[0] + 1
    assert _ids(api.result("getUpdates")) == ids  # not confirmed yet: delivered again
    assert _ids(api.result("getUpdates", limit=2)) == ids[:2]
    assert _ids(api.result("getUpdates", offset=ids[1])) == ids[1:]  # confirms the first
    assert _ids(api.result("getUpdates", offset=ids[2] + 1)) == []
    assert sandbox.pending_updates == []
    alice.send("four")
    assert api.result("getUpdates")[0]["update_id"] == ids[2] + 1


def test_negative_offset_keeps_the_last_updates_and_forgets_the_rest(sandbox, api):
    alice = sandbox.create_user("Alice")
    for text in ("one", "two", "three"):
        alice.send(text)
    last = api.result("getUpdates", offset=-1)
    assert [u["message"]["text"] for u in last] == ["three"]
    assert [u["message"]["text"] for u in api.result("getUpdates")] == ["three"]


def test_limit_is_clamped_to_1_100(sandbox, api):
    alice = sandbox.create_user("Alice")
    for n in range(3):
        alice.send(f"m{n}")
    assert len(api.result("getUpdates", limit=0)) == 1
    assert len(api.result("getUpdates", limit=1000)) == 3


def test_long_poll_wakes_up_when_an_update_arrives(sandbox, api):
    alice = sandbox.create_user("Alice")
    threading.Timer(0.3, alice.send, args=("wake up",)).start()
    started = time.monotonic()
    updates = api.result("getUpdates", timeout=10)
    assert 0.2 < time.monotonic() - started < 3
    assert updates[0]["message"]["text"] == "wake up"


def test_long_poll_times_out_empty_and_stop_ends_it(sandbox, api):
    started = time.monotonic()
    assert api.result("getUpdates", timeout=1) == []
    assert 0.9 < time.monotonic() - started < 2
    threading.Timer(0.2, sandbox.stop).start()
    started = time.monotonic()
    assert api.result("getUpdates", timeout=20) == []  # answered, not cut off
    assert time.monotonic() - started < 3


def test_a_second_poller_terminates_the_first(sandbox, api):
    answers = {}
    first = threading.Thread(target=lambda: answers.update(first=api("getUpdates", timeout=10)))
    first.start()
    time.sleep(0.3)  # let the first poll start waiting
    with RawBotApi(sandbox) as other:
        other("getUpdates", timeout=0)
    first.join(5)
    assert answers["first"] == {
        "ok": False, "error_code": 409,
        "description": "Conflict: terminated by other getUpdates request; "
                       "make sure that only one bot instance is running",
    }


def test_chat_member_updates_only_when_asked_for(sandbox, api, channel):
    link = api.result("createChatInviteLink", chat_id=channel.id)["invite_link"]
    sandbox.create_user("Early").join(link)
    assert [u for u in api.result("getUpdates") if "chat_member" in u] == []  # not in the default set
    api.result("getUpdates", allowed_updates=["message", "chat_member"])
    sandbox.create_user("Late").join(link)
    updates = api.result("getUpdates")
    joined = [u["chat_member"]["new_chat_member"]["user"]["first_name"] for u in updates if "chat_member" in u]
    assert joined == ["Late"]
    sandbox.create_user("Someone").send("before")
    api.result("getUpdates", allowed_updates=["chat_member"])
    sandbox.create_user("Ignored").send("after")
    # The new setting filters updates made after it, not those already queued.
    texts = [u["message"]["text"] for u in api.result("getUpdates") if "message" in u]
    assert texts == ["before"]


def test_delete_webhook_can_drop_pending_updates(sandbox, api):
    sandbox.create_user("Alice").send("old news")
    api.result("deleteWebhook")
    assert len(api.result("getUpdates")) == 1
    api.result("deleteWebhook", drop_pending_updates=True)
    assert api.result("getUpdates") == []
