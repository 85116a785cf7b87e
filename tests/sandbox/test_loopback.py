"""The emulators' one HTTP base: werkzeug's threaded server plus held-back answers and a stop
that lets answers in flight out, then cuts what is left."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from decimal import Decimal

import httpx
import pytest

from telepay_sandbox.loopback import LoopbackServer, Request, Response


class Echo:
    """`/slow` waits until released; `/held` is answered late; `/boom` is a bug; anything else
    echoes what werkzeug decoded."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, request: Request) -> Response:
        if request.path == "/slow":
            self.release.wait(10)
            return Response(200, b'"slow"')
        if request.path == "/held":
            return Response(200, b'"held"', delay=30)
        if request.path == "/boom":
            raise RuntimeError("a sandbox bug")
        if request.path == "/ignore":
            return Response(200, b'"ignored"')  # whatever the body was, unread
        body = {"query": request.query, "form": request.form.to_dict(), "client": request.client}
        if request.mimetype == "application/json":
            body["json"] = str(request.json_body()["amount"])  # a Decimal, exactly as sent
        return Response(200, json.dumps(body).encode())


@pytest.fixture
def echo():
    app = Echo()
    server = LoopbackServer(app, "echo")
    server.start()
    yield app, server
    app.release.set()
    server.stop()


def test_a_slow_answer_does_not_hold_up_other_callers(echo):
    app, server = echo
    slow = threading.Thread(target=lambda: httpx.get(server.origin + "/slow", timeout=10))
    slow.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert httpx.get(server.origin + "/fast", timeout=5).status_code == 200
    assert time.monotonic() - started < 1 and slow.is_alive()
    app.release.set()
    slow.join(5)


def test_bodies_and_queries_are_decoded(echo):
    _, server = echo
    chunks = iter([b'{"amount": ', b'"ignored", "amount": 1.10}'])  # chunked: no Content-Length
    answer = httpx.post(server.origin + "/echo?a=1&a=2&b=", content=chunks,
                        headers={"Content-Type": "application/json"}).json()
    assert answer == {"query": {"a": "1", "b": ""}, "form": {}, "client": "127.0.0.1", "json": "1.10"}
    assert Decimal(answer["json"]) == Decimal("1.10")
    form = httpx.post(server.origin + "/echo", data={"currency": "btc"}).json()
    assert form["form"] == {"currency": "btc"}


def test_a_connection_is_kept_for_the_next_request_whatever_the_body(echo):
    _, server = echo
    ports = set()
    with httpx.Client(base_url=server.origin) as client:
        for _ in range(3):
            # An unread body, a chunked one, then a plain request: each answered right, on one connection.
            assert client.post("/ignore", content=b"x" * 70_000).json() == "ignored"
            chunked = client.post("/echo", content=iter([b'{"amount": 2.5', b"0}"]),
                                  headers={"Content-Type": "application/json"})
            assert chunked.json()["json"] == "2.50"
            answer = client.get("/echo?n=1")
            assert answer.json()["query"] == {"n": "1"}
            ports.add(answer.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == 1  # kept alive, as the real APIs do


def test_stop_lets_an_answer_in_flight_out_and_cuts_an_idle_connection(echo):
    app, server = echo
    idle = socket.create_connection(server.address)  # connected, never asks anything
    answers = []
    slow = threading.Thread(target=lambda: answers.append(httpx.get(server.origin + "/slow", timeout=10)))
    slow.start()
    time.sleep(0.1)
    threading.Timer(0.3, app.release.set).start()  # the answer is done while stop waits
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    slow.join(5)
    assert [a.status_code for a in answers] == [200]
    idle.settimeout(2)
    assert idle.recv(1) == b""  # cut, not left to hold a thread
    idle.close()


def test_a_held_back_answer_goes_out_when_the_sandbox_stops(echo):
    _, server = echo
    answers = []
    held = threading.Thread(target=lambda: answers.append(httpx.get(server.origin + "/held", timeout=10)))
    held.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    held.join(5)
    assert time.monotonic() - started < 3 and [a.json() for a in answers] == ["held"]


def test_an_emulator_bug_is_a_500_in_the_log_and_requests_are_not_printed(echo, caplog):
    _, server = echo
    werkzeug_handlers = list(logging.getLogger("werkzeug").handlers)
    with caplog.at_level(logging.DEBUG):
        assert httpx.get(server.origin + "/boom").status_code == 500
        assert httpx.get(server.origin + "/fine").status_code == 200
    [bug] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert bug.name == "telepay_sandbox.loopback" and "a sandbox bug" in caplog.text
    # werkzeug's own request log would add a stderr handler to its logger and print every call.
    assert not [r for r in caplog.records if r.name == "werkzeug"]
    assert logging.getLogger("werkzeug").handlers == werkzeug_handlers
