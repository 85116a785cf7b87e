"""`telepay sign` produces headers the API accepts, and the documented test vector."""

from __future__ import annotations

import json

import pytest

from click.testing import CliRunner

from telepay.cli import main
from tests.api.conftest import SIGNING_SECRET


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a developer's own .env must not leak in


def _sign(body: str, *args: str, secret: str = SIGNING_SECRET):
    return CliRunner().invoke(main, ["sign", "--body", body, *args], env={"WEBHOOK_SIGNING_SECRET": secret})


def test_documented_vector():
    result = _sign('{"channel_id":1,"text":"hello"}', "--timestamp", "1700000000", secret="whsec_test")
    assert result.exit_code == 0
    assert "X-Signature-Timestamp: 1700000000" in result.output
    assert "X-Signature: eaca6fc1b64f752c816a69383150d05960233dd8f719212ff411c4098b657543" in result.output
    assert "curl -sS -X POST" in result.output


def test_signed_headers_are_accepted(client, channel):
    body = json.dumps({"channel_id": channel.id, "text": "from the sign command"})
    result = _sign(body)
    headers = dict(line.split(": ", 1) for line in result.output.splitlines()[:2])
    response = client.post("/webhooks/notification", data=body.encode(),
                           headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 202, response.json


def test_the_signature_covers_the_url_path_and_method(client, channel):
    body = json.dumps({"channel_id": channel.id})
    result = _sign(body, "--url", "https://pay.example.com/webhooks/broadcast-trigger")
    headers = dict(line.split(": ", 1) for line in result.output.splitlines()[:2])
    elsewhere = client.post("/webhooks/notification", data=body.encode(),
                            headers={**headers, "Content-Type": "application/json"})
    assert elsewhere.status_code == 401
    right = client.post("/webhooks/broadcast-trigger", data=body.encode(),
                        headers={**headers, "Content-Type": "application/json"})
    assert right.status_code == 202, right.json
    status = _sign("", "--method", "GET", "--url", "http://127.0.0.1:8080/status")
    assert status.exit_code == 0 and "curl -sS -X GET" in status.output
    headers = dict(line.split(": ", 1) for line in status.output.splitlines()[:2])
    assert client.get("/status", headers=headers).status_code == 200


def test_refuses_a_body_that_is_not_json():
    result = _sign("{nope")
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_needs_the_secret():
    result = CliRunner().invoke(main, ["sign", "--body", "{}"], env={"WEBHOOK_SIGNING_SECRET": ""})
    assert result.exit_code == 2 and "WEBHOOK_SIGNING_SECRET" in result.output
