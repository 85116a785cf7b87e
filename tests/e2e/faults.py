"""Helpers for the fault-injection tests: the environment of a `telepay run` wired to the
sandboxes, freezing a PostgreSQL server of our own (SIGSTOP) as a hung database, a loopback
webhook that receives the alerts, and a shop (a seeded channel, the sandbox NOWPayments, an
operator) to make sales through while something is broken."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from telepay.models import Channel, ChannelStatus, Invoice, Tier
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import Person, TelegramSandbox

TOKEN = "111:e2e-faults-token"
BOT = "TelePayTestBot"
OPS = "ops"  # OPERATOR_TOKEN: the bearer for /status
NOWPAYMENTS_KEY = "sandbox-nowpayments-key"
GOOD_TRX = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"


def server_pids(pg_dir: Path) -> list[int]:
    postmaster = int((pg_dir / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


def freeze(pg_dir: Path) -> list[int]:
    """SIGSTOP the server and every backend; the postmaster first, so none is forked after the list."""
    pids = server_pids(pg_dir)
    os.kill(pids[0], signal.SIGSTOP)
    pids = server_pids(pg_dir)
    signal_all(pids, signal.SIGSTOP)
    return pids


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def env_for(telegram, tmp_path, **extra):
    database_url = extra.pop("database_url", None)
    return sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT,
                       data_dir=tmp_path, database_url=database_url, extra=extra)


def wait_for_log(process: TelepayProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in process.log():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{process.log()}")


def status(process: TelepayProcess) -> tuple[int, dict]:
    """`/status` as the operator reads it (the bearer token), with its HTTP code."""
    answer = httpx.get(process.base_url + "/status", headers={"Authorization": f"Bearer {OPS}"}, timeout=15)
    return answer.status_code, answer.json()


def wait_for_status(process: TelepayProcess, predicate, timeout: float) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = status(process)
        if predicate(code, body):
            return code, body
        if time.monotonic() > deadline:
            raise AssertionError(f"/status never matched within {timeout} s: {code} {body}")
        time.sleep(0.5)


def scrape(process: TelepayProcess) -> str:
    """The Prometheus text, from the loopback metrics endpoint, as Prometheus would fetch it."""
    return httpx.get(f"http://127.0.0.1:{process.env['METRICS_PORT']}/metrics", timeout=15).text


def metric(text: str, name: str, labels: str = "") -> float | None:
    """One sample's value from a scrape (`labels` as written inside the braces), or None."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


class Receiver:
    """A webhook endpoint on loopback (where ALERT_WEBHOOK_URL points) that can be told to fail
    its next answers; it keeps every alert it accepted, with the monotonic time it came."""

    def __init__(self):
        self.received: list[dict] = []
        self.times: list[float] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.received.append(body)
                    receiver.times.append(time.monotonic())
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.received):
                if predicate(body):
                    return body
            time.sleep(0.2)
        raise AssertionError(f"no matching alert within {timeout} s; got {self.received}")

    def firing(self, alert: str, timeout: float) -> tuple[dict, float]:
        """The first `firing` of `alert` and the monotonic time it arrived."""
        body = self.wait_for(lambda b: b["alert"] == alert and b["status"] == "firing", timeout)
        return body, self.times[self.received.index(body)]


class Shop:
    """A running `telepay run` selling one channel (seeded: $5 for 30 days, paid out in USDT on
    TRON) through the sandbox Telegram and NOWPayments; an operator in ADMIN_CHAT_IDS, alerts
    checked every second and sent to `receiver` as well. `env` overrides or adds settings."""

    PRICE = "💳 Pay $5.00"

    def __init__(self, telegram: TelegramSandbox, nowpayments: NowPaymentsSandbox, receiver: Receiver,
                 tmp_path: Path, *, database_url: str, **env: str):
        self.telegram, self.nowpayments = telegram, nowpayments
        self.operator = telegram.create_user("Olga", username="olga_ops")
        self.operator.send("/start")
        settings = {"ALERT_WEBHOOK_URL": receiver.url, "ALERT_CHECK_SECONDS": "1", "OPERATOR_TOKEN": OPS,
                    "ADMIN_CHAT_IDS": str(self.operator.id), **env}
        self.process = TelepayProcess(
            sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT, data_dir=tmp_path,
                        database_url=database_url, nowpayments_base_url=nowpayments.base_url, extra=settings),
            tmp_path / "run.log")
        self.engine = create_engine(database_url)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.key = self._channel()

    def _channel(self) -> str:
        owner = self.telegram.create_user("Paula")
        open_chat = self.telegram.create_channel("Paula News", username="paula_news", creator=owner)
        self.closed = self.telegram.create_channel("Paula VIP", creator=owner)
        self.telegram.add_admin(open_chat, self.telegram.bot)
        self.telegram.add_admin(self.closed, self.telegram.bot)
        with self.session_factory.begin() as session:
            # Its next subscribe post a day away: the post timer stays out of these tests.
            channel = Channel(key="paulakey1", owner_user_id=owner.id, open_chat_id=open_chat.id,
                              closed_chat_id=self.closed.id, open_title="Paula News", closed_title="Paula VIP",
                              status=ChannelStatus.ACTIVE, payout_currency="usdt", payout_network="trx",
                              payout_address=GOOD_TRX, next_post_at=datetime.now(timezone.utc) + timedelta(days=1))
            channel.tiers.append(Tier(number=1, price_usd=5, days=30))
            session.add(channel)
        return "paulakey1"

    def ask_to_pay(self, buyer: Person) -> None:
        """The buyer opens the tier link and presses Pay (what comes back is the test's to read)."""
        buyer.open_deep_link(f"https://t.me/{BOT}?start={self.key}-1")
        card = buyer.wait_for_message(lambda m: "Subscription to" in m.text, timeout=20)
        buyer.press(card, text=self.PRICE)

    def invoice_for(self, buyer: Person) -> Invoice:
        """Our invoice row once the buyer has it from the bot."""
        self.ask_to_pay(buyer)
        buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=30)
        return self.latest_invoice(buyer)

    def latest_invoice(self, buyer: Person) -> Invoice:
        with self.session_factory() as session:
            return session.scalars(select(Invoice).where(Invoice.buyer_user_id == buyer.id)
                                   .order_by(Invoice.created_at.desc()).limit(1)).one()

    def count(self, model, *where) -> int:
        with self.session_factory() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))


class Outage:
    """A switchable outage in front of a loopback service (a provider's emulator, Telegram): every
    request is forwarded to `target` until `down` is set; then each is answered `status` with
    `body` (by default a 503, as a provider's load balancer answers while its service is away),
    until `down` is cleared."""

    HOP = {"host", "content-length", "connection", "transfer-encoding", "content-encoding"}

    def __init__(self, target: str, status: int = 503,
                 body: bytes = b'{"error":"service_unavailable","message":"Service Unavailable"}'):
        self.target = target.rstrip("/")
        self.status, self.body = status, body
        self.down = False
        self.refused = 0
        self.refused_paths: list[str] = []
        outage = self

        class Handler(BaseHTTPRequestHandler):
            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if outage.down:
                    outage.refused += 1
                    outage.refused_paths.append(self.path)
                    status, headers, content = outage.status, {"Content-Type": "application/json"}, outage.body
                else:
                    sent = {k: v for k, v in self.headers.items() if k.lower() not in outage.HOP}
                    answer = httpx.request(self.command, outage.target + self.path, content=body, headers=sent,
                                           timeout=30)
                    status, content = answer.status_code, answer.content
                    headers = {k: v for k, v in answer.headers.items() if k.lower() not in outage.HOP}
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a long poll cut short by a restart)

            do_GET = do_POST = forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
