"""The HTTP surface: paths, tokens, encodings, injected failures and flood limits."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from telepay_sandbox.telegram import RateLimits


def test_wrong_token_and_unknown_method(sandbox):
    wrong = httpx.post(f"{sandbox.base_url}123:nope/getMe")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    unknown = httpx.post(f"{sandbox.base_url}{sandbox.token}/sendTelepathy")
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert httpx.get(f"{sandbox.base_url.removesuffix('/bot')}/elsewhere").status_code == 404
    assert sandbox.calls_to("sendTelepathy")[0].status == 404


def test_method_names_are_case_insensitive_and_get_works(sandbox):
    answer = httpx.get(f"{sandbox.base_url}{sandbox.token}/GETME").json()
    assert answer["ok"] is True and answer["result"]["is_bot"] is True
    assert sandbox.calls[-1].method == "getMe"


@pytest.mark.parametrize("encoding", ["json", "form", "multipart", "query"])
def test_parameters_in_every_encoding(sandbox, alice, encoding):
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    params = {"chat_id": alice.id, "text": "Hello", "reply_markup": markup, "protect_content": True}
    # Form encodings carry nested values and booleans JSON-serialised, as client libraries send them.
    flat = {key: value if isinstance(value, str) else json.dumps(value) for key, value in params.items()}
    url = f"{sandbox.base_url}{sandbox.token}/sendMessage"
    if encoding == "json":
        response = httpx.post(url, json=params)
    elif encoding == "form":
        response = httpx.post(url, data=flat)
    elif encoding == "multipart":
        response = httpx.post(url, data=flat, files={"unused": ("a.txt", b"file body")})
    else:
        response = httpx.get(url, params=flat)
    result = response.json()["result"]
    assert result["text"] == "Hello" and result["reply_markup"] == markup
    params = sandbox.calls_to("sendMessage")[-1].params
    assert params["chat_id"] == alice.id
    if encoding == "multipart":
        assert params["unused"] == b"file body"  # an upload stays bytes


@pytest.mark.parametrize("body, description", [
    (b"{not json", "Bad Request: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b"[1, 2]", "Bad Request: JSON body must be an object"),
])
def test_an_undecodable_body_is_a_bad_request_and_no_call(sandbox, body, description):
    url = f"{sandbox.base_url}{sandbox.token}/getMe"
    answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {"ok": False, "error_code": 400, "description": description}
    assert sandbox.calls == []


def test_malformed_values_are_bad_requests(sandbox, api, alice):
    url = f"{sandbox.base_url}{sandbox.token}/sendMessage"
    answer = httpx.post(url, data={"chat_id": alice.id, "text": "x", "reply_markup": "{not json"}).json()
    assert answer == {"ok": False, "error_code": 400,
                      "description": "Bad Request: can't parse reply markup JSON object"}
    invalid = api("getChatMember", chat_id=1, user_id="abc")
    assert invalid["description"] == "Bad Request: invalid user_id specified"


def test_fail_next_injects_errors(sandbox, api, alice):
    sandbox.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7, count=2)
    sandbox.fail_next("getMe", 502, "Bad Gateway")
    for _ in range(2):
        assert api("sendMessage", chat_id=alice.id, text="x") == {
            "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7}}
    assert api("sendMessage", chat_id=alice.id, text="x")["ok"] is True
    assert api("getMe")["error_code"] == 502 and api("getMe")["ok"] is True


def test_private_chat_burst_gets_429_with_retry_after(sandbox, api, alice):
    sandbox.set_rate_limits(RateLimits(private_per_second=1, private_burst=3))
    answers = [api("sendMessage", chat_id=alice.id, text=f"#{n}") for n in range(5)]
    assert [a["ok"] for a in answers] == [True, True, True, False, False]
    refused = answers[3]
    retry_after = refused["parameters"]["retry_after"]
    assert isinstance(retry_after, int) and retry_after >= 1
    assert refused == {"ok": False, "error_code": 429,
                       "description": f"Too Many Requests: retry after {retry_after}",
                       "parameters": {"retry_after": retry_after}}
    other = sandbox.create_user("Bob")
    other.send("/start")
    assert api("sendMessage", chat_id=other.id, text="hi")["ok"] is True  # limits are per chat
    time.sleep(retry_after)
    assert api("sendMessage", chat_id=alice.id, text="later")["ok"] is True


def test_group_and_global_limits(sandbox, api, channel):
    sandbox.set_rate_limits(RateLimits(group_per_minute=20, group_burst=20,
                                       global_per_second=1000, global_burst=1000))
    answers = [api("sendMessage", chat_id=channel.id, text=f"post {n}") for n in range(21)]
    assert sum(a["ok"] for a in answers) == 20
    assert answers[-1]["parameters"]["retry_after"] == 3  # one slot every 60/20 s

    sandbox.set_rate_limits(RateLimits(global_per_second=1, global_burst=5))
    people = [sandbox.create_user(f"P{n}") for n in range(6)]
    for person in people:
        person.send("/start")
    answers = [api("sendMessage", chat_id=person.id, text="news") for person in people]
    assert [a["ok"] for a in answers] == [True] * 5 + [False]
    assert answers[-1]["parameters"]["retry_after"] == 1


def test_defaults_are_telegram_like_and_on():
    limits = RateLimits()
    assert limits.enabled and limits.global_per_second == 30 and limits.group_per_minute == 20
    assert limits.private_per_second == 1 and limits.private_burst > 1
    assert not RateLimits.off().enabled
