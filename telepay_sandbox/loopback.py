"""The one HTTP base of the emulators (Telegram, NOWPayments, ChangeNOW, the chain's JSON-RPC).

An emulator is a function from `Request` (werkzeug's, with the readings every emulator uses) to
`Response`. werkzeug does the HTTP: its threaded server gives each connection a thread (so a
getUpdates long poll or a held-back answer never blocks other callers), parses the request and
decodes bodies (chunked, JSON, urlencoded, multipart). This module adds what a test sandbox
needs on top: answers that may be held back (`Response.delay`, how a test makes a client time
out while the server still does the work), quiet logs, and a `stop()` that lets answers in
flight go out, then cuts whatever connection is left, so no client can hold a shutdown open.

One piece is not werkzeug's: writing the answer (`_Handler.run_wsgi`). werkzeug's server closes
every connection after one answer, because it cannot tell unread body bytes from a next
request; a new connection per call costs ~0.6 ms, and ~4 ms at p90, on this busy machine, on
every Bot API call the product makes. Here the body is always read whole first, so the
connection stays open for the next request, as on the real APIs (docs/decisions.md, "The
emulators share werkzeug's server").
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from werkzeug import wrappers
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

logger = logging.getLogger(__name__)


class Request(wrappers.Request):
    """werkzeug's request, plus the readings the emulators share."""

    @property
    def query(self) -> dict[str, str]:
        """The query string's parameters (the first value of a repeated one)."""
        return self.args.to_dict()

    @property
    def body(self) -> bytes:
        return self.get_data(cache=True)

    @property
    def client(self) -> str:
        return self.remote_addr or ""

    def json_body(self) -> Any:
        """The body as JSON with numbers as Decimal; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8"), parse_float=Decimal)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to hold the answer back after the work is done

    @classmethod
    def text(cls, status: int, text: str, **kwargs: Any) -> Response:
        return cls(status, text.encode("utf-8"), **kwargs)


App = Callable[[Request], Response]


class _InFlight:
    """Counts answers being made, so stopping can let them go out first."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout)


class _Handler(WSGIRequestHandler):
    # Stated here, or werkzeug sets it on its own shared handler class.
    protocol_version = "HTTP/1.1"
    timeout = 60  # a connection that never sends its request is dropped eventually
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def run_wsgi(self) -> None:
        """One request, answered on a connection that stays open (see the module's docstring)."""
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        with self.server.in_flight:
            self.environ = self.make_environ()
            request = Request(self.environ)
            try:
                request.get_data(cache=True)  # the whole body, so the next request starts clean
            except OSError:  # a broken chunked body: nothing more on this connection makes sense
                self.close_connection = True
                return
            response = self.server.answer(request)
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(response.body)
            except ConnectionError:
                self.close_connection = True  # the client gave up waiting: not our error

    def log(self, type: str, message: str, *args: Any) -> None:
        # werkzeug's own logger prints every request at INFO to stderr; here it is debug noise.
        logger.debug("%s %s " + message, self.server.name, self.address_string(), *args)


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, keeping its open connections so `stop` can cut them (an idle
    client or a long poll would otherwise keep a thread, and the shutdown, waiting)."""

    def __init__(self, host: str, port: int, app: App, name: str) -> None:
        self.name = name
        self.in_flight = _InFlight()
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.emulator = app
        # Requests reach `answer` from `_Handler.run_wsgi`, never through a WSGI app.
        super().__init__(host, port, None, handler=_Handler)

    def answer(self, request: Request) -> Response:
        try:
            response = self.emulator(request)
        except Exception:  # a sandbox bug: answer 500 like a real server, keep the trace in the log
            logger.exception("%s failed to serve %s %s", self.name, request.method, request.path)
            response = Response(500, b'{"message":"Internal Server Error"}')
        if response.delay > 0:
            self.stopping.wait(response.delay)  # a stopping sandbox sends what it holds at once
        return response

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class LoopbackServer:
    """Serves an `App` on 127.0.0.1 from a background thread."""

    def __init__(self, app: App, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._name = name
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()  # stop() may come from a test and a fixture at once

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def address(self) -> tuple[str, int]:
        if self._httpd is None:
            raise RuntimeError(f"the {self._name} sandbox is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`."""
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        with self._lifecycle:
            if self._httpd is not None:
                return
            self._httpd = _Server(*self._address, self._app, self._name)
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"{self._name}-sandbox", daemon=True)
            self._thread.start()

    def stop(self, grace: float = 5.0) -> None:
        """Stop listening, give answers in flight up to `grace` seconds to go out (long polls
        are told to end by their emulator first), then cut the connections left."""
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
            if httpd is None:
                return
            httpd.stopping.set()
            httpd.shutdown()
            httpd.in_flight.wait_idle(grace)
            httpd.close_connections()
            httpd.server_close()
            if thread is not None:
                thread.join(timeout=5)
