"""The NOWPayments sandbox: its REST API over loopback HTTP and the IPNs it delivers."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from telepay.clients.http import tls_context
from telepay.clock import ManualClock
from telepay_sandbox.loopback import LoopbackServer, Response
from telepay_sandbox.nowpayments import Delivery, NowPaymentsSandbox, SandboxError
from telepay.security.nowpayments import SIGNATURE_HEADER, verify_ipn

KEY = "np-sandbox-key"
SECRET = "np-sandbox-ipn-secret"
DESCRIPTION = "Доступ к «Клубу» — 30 дней"
IPN_FIELDS = {
    "payment_id", "parent_payment_id", "invoice_id", "payment_status", "pay_address", "price_amount",
    "price_currency", "pay_amount", "actually_paid", "actually_paid_at_fiat", "pay_currency", "order_id",
    "order_description", "purchase_id", "outcome_amount", "outcome_currency", "fee",
}


class Receiver:
    """Our IPN endpoint, as far as the sandbox can tell: records bodies, answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str | None]] = []
        self.answers: list[int] = []  # consumed first; then 200
        self.slow_first: float = 0.0
        self.lock = threading.Lock()
        self.server = LoopbackServer(self, "ipn-receiver")

    def __call__(self, request) -> Response:
        with self.lock:
            self.received.append((request.body, request.headers.get(SIGNATURE_HEADER)))
            status = self.answers.pop(0) if self.answers else 200
            delay, self.slow_first = self.slow_first, 0.0
        return Response(status, b'{"ok":true}', delay=delay)

    @property
    def url(self) -> str:
        return self.server.origin + "/webhooks/nowpayments"

    def statuses(self) -> list[str]:
        return [verify_ipn(SECRET, body, sig)["payment_status"] for body, sig in self.received]


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.server.start()
    yield receiver
    receiver.server.stop()


@pytest.fixture
def sandbox():
    with NowPaymentsSandbox(KEY, SECRET, seed=7) as np:
        yield np


def _invoice(sandbox, receiver, price="15", **extra) -> dict:
    body = {"price_amount": Decimal(price), "price_currency": "usd", "order_id": "inv-42",
            "order_description": DESCRIPTION, "ipn_callback_url": receiver.url,
            "success_url": "https://t.me/telepay_bot", "cancel_url": "https://t.me/telepay_bot",
            "is_fixed_rate": True, **extra}
    raw = "{" + ",".join(f'"{k}":{v}' if isinstance(v, Decimal) else f"{json.dumps(k)}:{json.dumps(v)}"
                         for k, v in body.items()) + "}"
    answer = httpx.post(sandbox.base_url + "/invoice", content=raw.encode(),
                        headers={"x-api-key": KEY, "Content-Type": "application/json"}, verify=tls_context())
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_invoice_answer_is_shaped_like_nowpayments(sandbox, receiver):
    invoice = _invoice(sandbox, receiver, price="15.0")
    assert isinstance(invoice["id"], str) and invoice["id"].isdigit()
    assert invoice["price_amount"] == "15"  # a string, as NOWPayments answers
    assert invoice["order_id"] == "inv-42"
    assert invoice["invoice_url"] == f"{sandbox.origin}/invoice/{invoice['id']}"
    assert invoice["created_at"].endswith("Z") and invoice["is_fixed_rate"] is True
    page = httpx.get(invoice["invoice_url"])
    assert page.status_code == 200 and DESCRIPTION in page.text and "15 USD" in page.text


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_wrong_api_key_is_403(sandbox, headers):
    answer = httpx.post(sandbox.base_url + "/invoice", json={"price_amount": 15, "price_currency": "usd"},
                        headers=headers)
    assert answer.status_code == 403
    assert answer.json() == {"status": False, "statusCode": 403, "code": "INVALID_API_KEY",
                             "message": "Invalid api key"}


@pytest.mark.parametrize("body, message", [
    ({"price_currency": "usd"}, '"price_amount" is required'),
    ({"price_amount": -1, "price_currency": "usd"}, '"price_amount" must be a positive number'),
    ({"price_amount": 15}, '"price_currency" is required'),
    ({"price_amount": 15, "price_currency": "usd", "ipn_callback_url": "not a url"},
     '"ipn_callback_url" must be a valid uri'),
    ({"price_amount": 15, "price_currency": "usd", "is_fixed_rate": "yes"}, '"is_fixed_rate" must be a boolean'),
    ({"price_amount": 15, "price_currency": "xyz"}, "Currency xyz was not found"),
    ({"price_amount": "0.10", "price_currency": "usd"}, "amountTo is too small"),
])
def test_invalid_invoice_is_400_with_the_reason(sandbox, body, message):
    answer = httpx.post(sandbox.base_url + "/invoice", json=body, headers={"x-api-key": KEY}, verify=tls_context())
    assert answer.status_code == 400
    assert answer.json()["message"] == message and answer.json()["statusCode"] == 400


def test_full_payment_sends_signed_ipns_through_every_status(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    payment_id = sandbox.pay(invoice["id"])
    assert receiver.statuses() == ["waiting", "confirming", "confirmed", "sending", "finished"]
    finished = verify_ipn(SECRET, *receiver.received[-1])
    assert IPN_FIELDS <= set(finished)
    assert set(finished["fee"]) == {"currency", "depositFee", "withdrawalFee", "serviceFee"}
    assert finished["payment_id"] == payment_id and finished["invoice_id"] == int(invoice["id"])
    assert finished["order_id"] == "inv-42" and finished["order_description"] == DESCRIPTION
    assert finished["pay_amount"] == Decimal("0.006")  # 15 USD at 2500 USD/ETH
    assert finished["actually_paid"] == finished["pay_amount"]
    assert finished["parent_payment_id"] is None
    assert all(record.ok and record.attempt == 1 for record in sandbox.ipns_for(payment_id))


def test_ipn_wire_text_is_not_what_python_json_would_sign(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    sandbox.pay(invoice["id"], amount_usd=Decimal("0.125"))  # 0.00005 ETH arrives
    body, signature = receiver.received[1]
    text = body.decode("utf-8")
    assert '"price_amount":15.0' in text and '"actually_paid":0.00005' in text
    assert DESCRIPTION in text  # raw UTF-8, not \u escapes
    verify_ipn(SECRET, body, signature)


def test_ipns_are_shaped_like_production_ones(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    sandbox.pay(invoice["id"])
    body = json.loads(receiver.received[-1][0], parse_float=Decimal)
    assert list(body) == sorted(body) and list(body["fee"]) == sorted(body["fee"])  # keys sorted
    assert isinstance(body["updated_at"], int) and body["updated_at"] > 1.7e12  # epoch milliseconds
    assert "created_at" not in body
    assert body["payment_status"] == "finished" and body["actually_paid_at_fiat"] == 0


@pytest.mark.parametrize("style, spelled", [("js", '"price_amount":15,'), ("python", '"actually_paid":5e-05')])
def test_every_number_style_verifies(receiver, style, spelled):
    with NowPaymentsSandbox(KEY, SECRET, number_style=style) as sandbox:
        invoice = _invoice(sandbox, receiver)
        sandbox.pay(invoice["id"], amount_usd=Decimal("0.125"))
    body, signature = receiver.received[1]
    assert spelled in body.decode()
    assert verify_ipn(SECRET, body, signature)["actually_paid"] == Decimal("0.00005")


def test_partial_payment_ends_partially_paid(sandbox, receiver):
    invoice = _invoice(sandbox, receiver, price="20")
    payment_id = sandbox.pay(invoice["id"], currency="usdttrc20", partial=True)
    assert receiver.statuses() == ["waiting", "confirming", "partially_paid"]
    last = verify_ipn(SECRET, *receiver.received[-1])
    assert last["pay_amount"] == Decimal("20") and last["actually_paid"] == Decimal("10")
    assert last["actually_paid_at_fiat"] == 0  # as production IPNs: never relied on
    status = httpx.get(f"{sandbox.base_url}/payment/{payment_id}", headers={"x-api-key": KEY}).json()
    assert status["payment_status"] == "partially_paid"


def test_failed_expired_and_refunded(sandbox, receiver):
    failed = _invoice(sandbox, receiver)
    payment_id = sandbox.pay(failed["id"], fail=True)
    sandbox.refund(payment_id)
    expiring = _invoice(sandbox, receiver)
    expired_id = sandbox.expire(expiring["id"])
    assert receiver.statuses() == ["waiting", "confirming", "failed", "refunded", "waiting", "expired"]
    assert verify_ipn(SECRET, *receiver.received[-1])["payment_id"] == expired_id
    with pytest.raises(SandboxError):
        sandbox.pay(expiring["id"])


def test_fixed_rate_invoice_expires_after_20_minutes(receiver):
    clock = ManualClock()
    with NowPaymentsSandbox(KEY, SECRET, clock=clock) as sandbox:
        invoice = _invoice(sandbox, receiver)
        clock.advance(timedelta(minutes=21))
        with pytest.raises(SandboxError, match="expired"):
            sandbox.pay(invoice["id"])
        assert "expired" in httpx.get(invoice["invoice_url"]).text


def test_redeposit_is_a_child_payment(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    parent = sandbox.pay(invoice["id"])
    child = sandbox.redeposit(parent, amount_usd=Decimal("5"))
    body = verify_ipn(SECRET, *receiver.received[-1])
    assert body["payment_id"] == child != parent
    assert body["parent_payment_id"] == parent and body["payment_status"] == "finished"
    # Shaped like NOWPayments' documented example: no invoice, no order of its own.
    assert body["invoice_id"] is None and body["order_id"] is None and body["order_description"] is None
    assert body["actually_paid"] == Decimal("0.002")
    assert body["pay_address"] == sandbox.payment(parent).pay_address


def test_repeats_concurrent_copies_and_order(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    sandbox.pay(invoice["id"], delivery=Delivery(repeats=3, concurrent=True, order="reversed"))
    statuses = receiver.statuses()
    assert len(statuses) == 15
    assert statuses[:3] == ["finished"] * 3 and statuses[-3:] == ["waiting"] * 3


def test_shuffled_order_is_reproducible(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    sandbox.pay(invoice["id"], delivery=Delivery(order="shuffled", seed=3))
    assert sorted(receiver.statuses()) == sorted(["waiting", "confirming", "confirmed", "sending", "finished"])
    assert receiver.statuses() != ["waiting", "confirming", "confirmed", "sending", "finished"]


def test_resends_while_our_endpoint_errs_or_is_slow(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    receiver.answers = [500, 503]
    payment_id = sandbox.pay(invoice["id"], statuses=("waiting",))
    attempts = sandbox.ipns_for(payment_id)
    assert [(r.attempt, r.status_code) for r in attempts] == [(1, 500), (2, 503), (3, 200)]
    receiver.slow_first = 0.5
    sandbox.resend(payment_id, delivery=Delivery(timeout=0.2))
    late = sandbox.ipns_for(payment_id)[3:]
    assert late[0].status_code is None and "Timeout" in late[0].error
    assert late[1].ok and late[1].attempt == 2


def test_after_a_few_failed_deliveries_it_gives_up_as_nowpayments_does(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    receiver.answers = [500] * 10
    payment_id = sandbox.pay(invoice["id"], statuses=("waiting", "confirming"),
                             delivery=Delivery(retries=2, retry_delay=0.001))
    assert [(r.status, r.attempt, r.status_code) for r in sandbox.ipns_for(payment_id)] == [
        ("waiting", 1, 500), ("waiting", 2, 500), ("waiting", 3, 500),
        ("confirming", 1, 500), ("confirming", 2, 500), ("confirming", 3, 500)]
    assert sandbox.given_up == [(payment_id, "waiting"), (payment_id, "confirming")]


def test_the_payments_list_with_either_authentication(receiver):
    with NowPaymentsSandbox(KEY, SECRET, list_auth="jwt") as sandbox:
        sandbox.add_account("ops@example.test", "pw")
        invoice = _invoice(sandbox, receiver)
        paid = [sandbox.pay(invoice["id"]) for _ in range(3)]
        url = f"{sandbox.base_url}/payment/"
        query = {"limit": 2, "page": 0, "dateFrom": "2020-01-01", "dateTo": "2100-01-01T00:00:00.000Z"}
        refused = httpx.get(url, params=query, headers={"x-api-key": KEY})
        assert refused.status_code == 401 and refused.json()["code"] == "AUTH_REQUIRED"
        assert httpx.post(f"{sandbox.base_url}/auth", json={"email": "ops@example.test", "password": "no"},
                          headers={"x-api-key": KEY}).status_code == 403
        token = httpx.post(f"{sandbox.base_url}/auth", json={"email": "ops@example.test", "password": "pw"},
                           headers={"x-api-key": KEY}).json()["token"]
        headers = {"x-api-key": KEY, "Authorization": f"Bearer {token}"}
        first = httpx.get(url, params=query, headers=headers).json()
        second = httpx.get(url, params={**query, "page": 1}, headers=headers).json()
        assert (first["pagesCount"], first["total"], len(first["data"]), len(second["data"])) == (2, 3, 2, 1)
        assert [p["payment_id"] for p in first["data"] + second["data"]] == paid
        assert first["data"][0]["order_id"] == "inv-42" and first["data"][0]["payment_status"] == "finished"
        before = httpx.get(url, params={**query, "dateTo": "2020-01-02"}, headers=headers).json()
        assert before["data"] == [] and before["pagesCount"] == 0


def test_background_delivery_with_delays(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    started = time.monotonic()
    sandbox.pay(invoice["id"], delivery=Delivery(delay=0.05, background=True))
    assert time.monotonic() - started < 0.2
    assert sandbox.wait_idle(5)
    assert receiver.statuses() == ["waiting", "confirming", "confirmed", "sending", "finished"]


def test_payment_is_visible_only_to_its_merchant(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    payment_id = sandbox.pay(invoice["id"])
    sandbox.add_api_key("other-merchant")
    mine = httpx.get(f"{sandbox.base_url}/payment/{payment_id}", headers={"x-api-key": KEY})
    assert mine.status_code == 200 and mine.json()["payment_status"] == "finished"
    assert '"pay_amount":0.006' in mine.text
    theirs = httpx.get(f"{sandbox.base_url}/payment/{payment_id}", headers={"x-api-key": "other-merchant"})
    assert theirs.status_code == 404 and theirs.json()["code"] == "PAYMENT_NOT_FOUND"


def test_estimate_and_min_amount(sandbox):
    estimate = httpx.get(sandbox.base_url + "/estimate", headers={"x-api-key": KEY},
                         params={"amount": "15", "currency_from": "usd", "currency_to": "eth"})
    assert json.loads(estimate.text, parse_float=Decimal)["estimated_amount"] == Decimal("0.006")
    minimum = httpx.get(sandbox.base_url + "/min-amount", headers={"x-api-key": KEY},
                        params={"currency_from": "eth", "currency_to": "trx", "fiat_equivalent": "usd"})
    assert json.loads(minimum.text, parse_float=Decimal)["min_amount"] == Decimal("0.0004")


def test_injected_failures_answer_with_nowpayments_errors(sandbox):
    sandbox.fail_next("/v1/estimate", status=500, count=2)
    params = {"amount": "15", "currency_from": "usd", "currency_to": "eth"}
    answers = [httpx.get(sandbox.base_url + "/estimate", params=params, headers={"x-api-key": KEY})
               for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 500, 200]
    assert answers[0].json()["statusCode"] == 500
    assert [c.status for c in sandbox.calls] == [500, 500, 200]


def test_the_invoice_page_lets_a_person_pay(sandbox, receiver):
    invoice = _invoice(sandbox, receiver)
    answer = httpx.post(f"{invoice['invoice_url']}/pay", data={"currency": "btc"})
    assert answer.status_code == 303 and answer.headers["location"] == "https://t.me/telepay_bot"
    assert sandbox.wait_idle(5)
    assert receiver.statuses()[-1] == "finished"
    assert verify_ipn(SECRET, *receiver.received[-1])["pay_currency"] == "btc"
