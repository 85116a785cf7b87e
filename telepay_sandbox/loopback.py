"""A small loopback HTTP server for the money-side emulators (NOWPayments, ChangeNOW, JSON-RPC).

An emulator is a function from `Request` to `Response`; this module owns the sockets: one thread
per connection (so a slow answer never blocks other callers), HTTP/1.1 keep-alive as real APIs
offer, answers that may be held back (`Response.delay`, how a test makes a client time out
while the server still does the work), and a `stop()` that does not wait for idle connections.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # case-insensitive (an email.message.Message)
    body: bytes
    client: str

    def json(self) -> Any:
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are dropped eventually
    # Headers and body go out in separate writes; with Nagle on, each answer waits ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        request = Request(
            method=self.command, path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.headers, body=body, client=self.client_address[0],
        )
        try:
            response = self.server.app(request)
        except Exception:  # a sandbox bug: answer 500 like a real server, keep the trace in the log
            logger.exception("%s failed to serve %s %s", self.server.name, self.command, url.path)
            response = Response(500, b'{"message":"Internal Server Error"}')
        if response.delay > 0:
            time.sleep(response.delay)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting: not our error

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s " + format, self.server.name, self.address_string(), *args)


class ConnectionTrackingServer(ThreadingHTTPServer):
    """A threading HTTP server that can cut its open connections on stop, so a keep-alive
    client (or a long poll) cannot hold a sandbox's shutdown open."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler) -> None:
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
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


class _Server(ConnectionTrackingServer):
    def __init__(self, address: tuple[str, int], app: App, name: str) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.name = name


class LoopbackServer:
    """Serves an `App` on 127.0.0.1 from a background thread."""

    def __init__(self, app: App, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._name = name
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def origin(self) -> str:
        """`http://127.0.0.1:PORT`."""
        if self._httpd is None:
            raise RuntimeError(f"the {self._name} sandbox is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = _Server(self._address, self._app, self._name)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self._name}-sandbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        # Idle keep-alive connections would otherwise keep their threads blocked on a read.
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None


@dataclass
class Fault:
    """An injected failure: answer `status` (or, with no status, do the work and answer late)."""

    route: str
    method: str | None
    status: int | None
    remaining: int
    delay: float = 0.0
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        route = self.route.rstrip("/")
        under = path.rstrip("/") == route or path.startswith(route + "/")
        return under and (self.method is None or self.method.upper() == method)


class Faults:
    """Failures queued by tests with `fail_next`, consumed by the requests that match first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def add(self, route: str, method: str | None, status: int | None, count: int, delay: float,
            retry_after: int | None) -> None:
        if status is None and delay <= 0:
            raise ValueError("give a status to answer, or a delay to answer late")
        with self._lock:
            self._queue.append(Fault(route, method, status, count, delay, retry_after))

    def take(self, method: str, path: str) -> Fault | None:
        """The first queued fault for `path` (the route or below it), counted down by one."""
        with self._lock:
            for fault in self._queue:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None


@dataclass(frozen=True)
class Call:
    """One request as a sandbox answered it (what a test asserts retries against)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    time: float


class ProviderError(Exception):
    """An error an emulated provider answers with, in that provider's own JSON shape."""

    def response(self) -> Response:
        raise NotImplementedError


class CallLog(Protocol):
    """What a provider's API needs of its sandbox to inject faults and log calls."""

    faults: Faults
    lock: threading.RLock
    calls: list[Call]


class ProviderApi:
    """The one entry point of every emulated provider: a queued fault answers first (or holds
    the real answer back), else the provider's `route`; every call is logged for tests."""

    def __init__(self, log: CallLog) -> None:
        self._log = log

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    def injected(self, status: int) -> Response:
        """The provider's answer for an injected failure with `status`."""
        raise NotImplementedError

    def __call__(self, request: Request) -> Response:
        fault = self._log.faults.take(request.method, request.path)
        if fault is not None and fault.status is not None:
            response = self.injected(fault.status)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
        else:
            try:
                response = self.route(request)
            except ProviderError as error:
                response = error.response()
        if fault is not None:
            response.delay = fault.delay
        with self._log.lock:
            self._log.calls.append(Call(request.method, request.path, request.query, response.status, time.time()))
        return response
