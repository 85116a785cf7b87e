"""NOWPayments sandbox: building IPN bodies and delivering them the way NOWPayments does.

A body carries every field of a real IPN, shaped as production IPNs are (keys sorted, epoch
millisecond `updated_at`, `actually_paid_at_fiat: 0`; `PaymentState.fields`), numbers spelled by
`jsontext` in the sandbox's chosen style, non-ASCII text raw; `x-nowpayments-sig` is computed over
the JSON.stringify canonical form with the IPN secret.

`Courier` posts them. What a test can ask of it (`Delivery`): each IPN sent N times, copies at
once from several threads, a pause between IPNs, the steps in another order, and resends while
our endpoint answers non-2xx or is slower than NOWPayments waits (they retry too). Like
NOWPayments, it stops after a few failed deliveries (`retries`): that IPN is never sent again
unless resent by hand (`NowPaymentsSandbox.resend`), and is listed in `given_up`. Every attempt
is kept as an `IpnRecord` with the answer it got.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from telepay.clients import jsontext
from telepay.clients.http import tls_context
from telepay_sandbox.nowpayments_model import PaymentState
from telepay.security.nowpayments import SIGNATURE_HEADER, nowpayments_signature

@dataclass(frozen=True)
class Delivery:
    """How IPNs reach our endpoint. The defaults are a well-behaved day."""

    repeats: int = 1  # each IPN sent this many times
    concurrent: bool = False  # send the copies of one IPN at the same moment from threads
    delay: float = 0.0  # seconds between one IPN and the next
    order: str | Sequence[int] = "in-order"  # or "reversed", "shuffled", or explicit positions
    seed: int | None = None  # for "shuffled"
    retries: int = 3  # resends after a non-2xx answer, an error or a timeout; then it gives up
    retry_delay: float = 0.05  # NOWPayments waits minutes; the sandbox need not
    timeout: float = 3.0  # NOWPayments wants an answer within about 3 s
    forwarded_for: str | None = None  # an X-Forwarded-For, as when Caddy sits in front of us
    background: bool = False  # deliver from a thread; `NowPaymentsSandbox.wait_idle()` waits


@dataclass(frozen=True)
class IpnRecord:
    """One attempt to deliver one IPN, and what our endpoint answered."""

    payment_id: int
    status: str
    url: str
    body: bytes
    signature: str
    attempt: int  # 1 for the first try, 2+ for resends
    copy: int  # which of the `repeats` copies
    status_code: int | None  # None when no answer came (refused, timed out)
    answer: bytes | None
    error: str | None
    sent_at: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Ipn:
    payment_id: int
    status: str
    url: str
    body: bytes
    signature: str


def build_ipn(payment: PaymentState, secret: str, style: str) -> Ipn:
    if not payment.ipn_callback_url:
        raise ValueError(f"payment {payment.payment_id} has no ipn_callback_url")
    body = jsontext.dumps(payment.fields(for_ipn=True), style).encode("utf-8")
    return Ipn(payment.payment_id, payment.status, payment.ipn_callback_url, body,
               nowpayments_signature(secret, body))


def arrange(ipns: list[Ipn], delivery: Delivery) -> list[Ipn]:
    """The IPNs in the order they will be sent."""
    if delivery.order == "in-order":
        return list(ipns)
    if delivery.order == "reversed":
        return ipns[::-1]
    if delivery.order == "shuffled":
        shuffled = list(ipns)
        random.Random(delivery.seed).shuffle(shuffled)
        return shuffled
    if isinstance(delivery.order, str):
        raise ValueError(f"unknown delivery order {delivery.order!r}")
    return [ipns[i] for i in delivery.order]


class Courier:
    """Posts IPNs and records every attempt."""

    def __init__(self) -> None:
        self.records: list[IpnRecord] = []
        self.given_up: list[Ipn] = []  # IPNs whose every delivery failed: never sent again
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        # One client shared by deliveries, on the shared TLS context: building a client costs a
        # TLS context (the CA bundle read) otherwise.
        self._client: httpx.Client | None = None

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(verify=tls_context())
            return self._client

    def send(self, ipns: list[Ipn], delivery: Delivery) -> None:
        with self._lock:
            self._pending += 1
        if delivery.background:
            threading.Thread(target=self._run, args=(ipns, delivery), name="nowpayments-ipn", daemon=True).start()
        else:
            self._run(ipns, delivery)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self, ipns: list[Ipn], delivery: Delivery) -> None:
        try:
            for i, ipn in enumerate(ipns):
                if i and delivery.delay:
                    time.sleep(delivery.delay)
                if delivery.concurrent:
                    copies = [threading.Thread(target=self._post, args=(ipn, delivery, n))
                              for n in range(1, delivery.repeats + 1)]
                    for thread in copies:
                        thread.start()
                    for thread in copies:
                        thread.join()
                else:
                    for n in range(1, delivery.repeats + 1):
                        self._post(ipn, delivery, n)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _post(self, ipn: Ipn, delivery: Delivery, copy: int) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: ipn.signature,
                   "User-Agent": "NOWPayments IPN sandbox"}
        if delivery.forwarded_for:
            headers["X-Forwarded-For"] = delivery.forwarded_for
        attempts = delivery.retries + 1
        for attempt in range(1, attempts + 1):
            sent_at = time.time()
            code = answer = error = None
            try:
                response = self._http().post(ipn.url, content=ipn.body, headers=headers, timeout=delivery.timeout)
                code, answer = response.status_code, response.content
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"
            record = IpnRecord(ipn.payment_id, ipn.status, ipn.url, ipn.body, ipn.signature, attempt, copy,
                               code, answer, error, sent_at)
            with self._lock:
                self.records.append(record)
            if record.ok:
                return
            if attempt < attempts:
                time.sleep(delivery.retry_delay * attempt)
        with self._lock:
            self.given_up.append(ipn)
