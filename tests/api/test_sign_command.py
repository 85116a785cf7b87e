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
    assert "X-Signature: 378595815bae6db734e7dd810029e53f18932c12e36fc966cb4ff142d00789c5" in result.output
    assert "curl -sS -X POST" in result.output


def test_signed_headers_are_accepted(client, channel):
    body = json.dumps({"channel_id": channel.id, "text": "from the sign command"})
    result = _sign(body)
    headers = dict(line.split(": ", 1) for line in result.output.splitlines()[:2])
    response = client.post("/webhooks/notification", data=body.encode(),
                           headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 202, response.json


def test_refuses_a_body_that_is_not_json():
    result = _sign("{nope")
    assert result.exit_code == 1 and "not valid JSON" in result.output


def test_needs_the_secret():
    result = CliRunner().invoke(main, ["sign", "--body", "{}"], env={"WEBHOOK_SIGNING_SECRET": ""})
    assert result.exit_code == 2 and "WEBHOOK_SIGNING_SECRET" in result.output
