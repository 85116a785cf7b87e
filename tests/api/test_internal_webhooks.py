"""Signed internal webhooks: every bad input gets the right 4xx and changes nothing."""

from __future__ import annotations

import json
import time

import pytest

from telepay.api.state import api_state
from telepay.models import Job
from telepay.security import signing
from tests.api.conftest import SIGNING_SECRET, make_app, post_signed, signed_headers, snapshot

NOTIFY = "/webhooks/notification"
TRIGGER = "/webhooks/broadcast-trigger"


def test_signing_test_vector():
    # Pins the wire format documented in the README for callers (checked with `openssl dgst -sha256 -hmac`).
    body = b'{"channel_id":1,"text":"hello"}'
    assert signing.sign("whsec_test", body, 1700000000, method="POST", path=NOTIFY) == (
        "eaca6fc1b64f752c816a69383150d05960233dd8f719212ff411c4098b657543"
    )


def test_finding_8_a_notification_signature_does_not_open_status_or_another_route(client, channel, engine):
    """The attack: a signature made for POST /webhooks/notification, unused, replayed as GET /status
    (or POST to the broadcast trigger) within the 300 s window. Refused, and nothing is recorded."""
    body = json.dumps({"channel_id": channel.id, "text": "hello"}).encode()
    headers = signed_headers(body, path=NOTIFY)
    before = snapshot(engine)
    status = client.get("/status", headers=headers)
    assert status.status_code == 401 and status.json["error"] == "signature_mismatch"
    assert client.get("/status", headers=signed_headers(b"", path=NOTIFY)).status_code == 401
    trigger = client.post(TRIGGER, data=body, headers=headers)
    assert trigger.status_code == 401 and trigger.json["error"] == "signature_mismatch"
    assert snapshot(engine) == before
    # Still unused, so still good where it was meant to go.
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 202


def test_notification_is_queued_for_the_owner(client, channel, session_factory):
    response = post_signed(client, NOTIFY, {"channel_id": channel.id, "text": "New release tonight"})
    assert response.status_code == 202, response.json
    with session_factory() as session:
        [job] = session.query(Job).all()
    assert job.kind == "notification.owner"
    assert job.payload == {"channel_id": channel.id, "text": "New release tonight"}


def test_notification_idempotency_key_queues_once(client, channel, engine):
    payload = {"channel_id": channel.id, "text": "hi", "idempotency_key": "release-42"}
    assert post_signed(client, NOTIFY, payload).status_code == 202
    # A caller's retry a second later carries a fresh signature: a retry, not a replay.
    second = post_signed(client, NOTIFY, payload, timestamp=int(time.time()) + 1)
    assert second.status_code == 202 and second.json["status"] == "already_queued"
    assert snapshot(engine)["jobs"] == 1


def test_broadcast_trigger_has_a_five_minute_cooldown(client, channel, app):
    first = post_signed(client, TRIGGER, {"channel_id": channel.id})
    assert first.status_code == 202
    again = post_signed(client, TRIGGER, {"channel_id": channel.id}, timestamp=int(time.time()) + 1)
    assert again.status_code == 429 and again.json["error"] == "cooldown"
    assert 295 <= int(again.headers["Retry-After"]) <= 300
    api_state(app).services.clock.advance(__import__("datetime").timedelta(minutes=5, seconds=1))
    later_headers = signed_headers(json.dumps({"channel_id": channel.id}).encode(), path=TRIGGER,
                                   timestamp=int(api_state(app).services.clock.now().timestamp()))
    later = client.post(TRIGGER, data=json.dumps({"channel_id": channel.id}), headers=later_headers)
    assert later.status_code == 202


def _bad_signature_cases(path):
    now = int(time.time())
    body = json.dumps({"channel_id": 1, "text": "x"}).encode()
    line = {"method": "POST", "path": path}
    good = signing.sign(SIGNING_SECRET, body, now, **line)
    return [
        ("no headers", {}, 401, "signature_missing"),
        ("no signature", {signing.TIMESTAMP_HEADER: str(now)}, 401, "signature_missing"),
        ("no timestamp", {signing.SIGNATURE_HEADER: good}, 401, "signature_missing"),
        ("timestamp not a number", {signing.TIMESTAMP_HEADER: "yesterday", signing.SIGNATURE_HEADER: good}, 401,
         "signature_malformed"),
        ("signature not hex", {signing.TIMESTAMP_HEADER: str(now), signing.SIGNATURE_HEADER: "z" * 64}, 401,
         "signature_malformed"),
        ("signature too short", {signing.TIMESTAMP_HEADER: str(now), signing.SIGNATURE_HEADER: good[:-2]}, 401,
         "signature_malformed"),
        ("wrong secret", {signing.TIMESTAMP_HEADER: str(now),
                          signing.SIGNATURE_HEADER: signing.sign("other", body, now, **line)},
         401, "signature_mismatch"),
        ("body signed with another timestamp", {signing.TIMESTAMP_HEADER: str(now + 1),
                                                signing.SIGNATURE_HEADER: good}, 401, "signature_mismatch"),
        ("stale", {signing.TIMESTAMP_HEADER: str(now - 310),
                   signing.SIGNATURE_HEADER: signing.sign(SIGNING_SECRET, body, now - 310, **line)},
         401, "signature_stale"),
        ("future", {signing.TIMESTAMP_HEADER: str(now + 310),
                    signing.SIGNATURE_HEADER: signing.sign(SIGNING_SECRET, body, now + 310, **line)},
         401, "signature_future"),
    ], body


@pytest.mark.parametrize("case", range(10))
@pytest.mark.parametrize("path", [NOTIFY, TRIGGER])
def test_bad_signatures_are_refused_and_change_nothing(client, channel, engine, case, path):
    cases, body = _bad_signature_cases(path)
    name, headers, status, code = cases[case]
    before = snapshot(engine)
    response = client.post(path, data=body, headers={**headers, "Content-Type": "application/json"})
    assert (response.status_code, response.json["error"]) == (status, code), name
    assert snapshot(engine) == before


def test_a_replayed_request_is_refused(client, channel, engine):
    body = json.dumps({"channel_id": channel.id, "text": "once"}).encode()
    headers = signed_headers(body)
    assert client.post(NOTIFY, data=body, headers=headers).status_code == 202
    before = snapshot(engine)
    replay = client.post(NOTIFY, data=body, headers=headers)
    assert replay.status_code == 401 and replay.json["error"] == "signature_replayed"
    assert snapshot(engine) == before


def test_replays_are_refused_across_app_instances(engine, channel, session_factory):
    body = json.dumps({"channel_id": channel.id, "text": "once"}).encode()
    headers = signed_headers(body)
    assert make_app(engine).test_client().post(NOTIFY, data=body, headers=headers).status_code == 202
    assert make_app(engine).test_client().post(NOTIFY, data=body, headers=headers).status_code == 401


@pytest.mark.parametrize("payload,status,code", [
    (b"not json at all", 400, "malformed_json"),
    (b'{"channel_id": 1, "text": ', 400, "malformed_json"),
    (b"\xff\xfe", 400, "malformed_json"),
    (b"[]", 422, "invalid_payload"),
    (b'{"text": "no channel"}', 422, "invalid_payload"),
    (b'{"channel_id": "1", "text": "id as a string"}', 422, "invalid_payload"),
    (b'{"channel_id": -4, "text": "negative"}', 422, "invalid_payload"),
    (b'{"channel_id": 1, "text": ""}', 422, "invalid_payload"),
    (b'{"channel_id": 1, "text": "x", "extra": true}', 422, "invalid_payload"),
    (b'{"channel_id": 1, "text": "x", "idempotency_key": "has spaces"}', 422, "invalid_payload"),
    (json.dumps({"channel_id": 1, "text": "x" * 4001}).encode(), 422, "invalid_payload"),
    (b'{"channel_id": 999999, "text": "unknown channel"}', 404, "unknown_channel"),
    (b'{"channel_id": 100000000000000000000000, "text": "wider than bigint"}', 422, "invalid_payload"),
])
def test_bad_payloads_are_refused_and_change_nothing(client, channel, engine, payload, status, code):
    before = snapshot(engine)
    response = post_signed(client, NOTIFY, payload)
    assert (response.status_code, response.json["error"]) == (status, code), response.json
    assert snapshot(engine) == before


def test_unknown_channel_on_the_trigger(client, channel, engine):
    before = snapshot(engine)
    response = post_signed(client, TRIGGER, {"channel_id": 424242})
    assert response.status_code == 404 and response.json["error"] == "not_found"
    assert snapshot(engine) == before


def test_wrong_content_type(client, channel, engine):
    body = json.dumps({"channel_id": channel.id, "text": "x"}).encode()
    before = snapshot(engine)
    response = client.post(NOTIFY, data=body, headers={**signed_headers(body), "Content-Type": "text/plain"})
    assert response.status_code == 415 and response.json["error"] == "unsupported_media_type"
    assert snapshot(engine) == before


def test_oversized_body(client, channel, engine):
    body = json.dumps({"channel_id": channel.id, "text": "x" * (65 * 1024)}).encode()
    before = snapshot(engine)
    response = client.post(NOTIFY, data=body, headers=signed_headers(body))
    assert response.status_code == 413 and response.json["error"] == "request_entity_too_large"
    assert snapshot(engine) == before


def test_every_answer_carries_the_security_headers(client):
    oversized = b"{" + b" " * (65 * 1024) + b"}"
    for response in (client.get("/health"), client.post(NOTIFY, data=b"{}"), client.get("/nope"),
                     client.post(NOTIFY, data=oversized, headers=signed_headers(oversized)),
                     client.put("/webhooks/nowpayments", data=b"{}")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
