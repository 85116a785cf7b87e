"""The Bot API over HTTP: routing, request decoding, auth, injected failures, the call log.

`BotApi.dispatch` turns (token, method, raw parameters) into Telegram's answer; `BotApiServer`
serves it on loopback with one thread per connection, so a getUpdates long poll never blocks
other calls. Requests may carry parameters in the query string and in a JSON, urlencoded or
multipart body, like Telegram accepts.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from telepay_sandbox import telegram_methods_chats, telegram_methods_messages, telegram_methods_payments
from telepay_sandbox.loopback import ConnectionTrackingServer
from telepay_sandbox.telegram_params import ApiError, Args, MethodSpec
from telepay_sandbox.telegram_state import World

logger = logging.getLogger(__name__)

_PATH = re.compile(r"/bot([^/]+)/([A-Za-z0-9_]+)/?")
UNAUTHORIZED = ApiError(401, "Unauthorized")
NOT_FOUND = ApiError(404, "Not Found")
SPECS: dict[str, MethodSpec] = {
    handler.spec.name.lower(): handler.spec
    for handler in (*telegram_methods_messages.METHODS, *telegram_methods_chats.METHODS,
                    *telegram_methods_payments.METHODS)
}


@dataclass(frozen=True)
class Call:
    """One Bot API request as the sandbox answered it."""

    method: str
    params: dict[str, Any]
    time: float
    status: int
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def description(self) -> str | None:
        return self.response.get("description")


@dataclass
class _Failure:
    method: str
    error: ApiError
    remaining: int


class BotApi:
    """Answers Bot API calls against the world and records each one."""

    def __init__(self, world: World, token: str) -> None:
        self.world = world
        self.token = token
        self.calls: list[Call] = []
        self.errors: list[str] = []  # internal failures: always a sandbox bug
        self._failures: list[_Failure] = []

    def fail_next(self, method: str, error: ApiError, count: int) -> None:
        with self.world.lock:
            self._failures.append(_Failure(method.lower(), error, count))

    def _injected(self, method: str) -> ApiError | None:
        for failure in self._failures:
            if failure.method == method.lower() and failure.remaining > 0:
                failure.remaining -= 1
                return failure.error
        return None

    def dispatch(self, token: str, method: str, raw: dict[str, Any]) -> tuple[int, bytes]:
        started = time.time()
        spec = SPECS.get(method.lower())
        name = spec.name if spec else method
        params = dict(raw)
        try:
            if token != self.token:
                raise UNAUTHORIZED
            if spec is None:
                raise NOT_FOUND
            with self.world.lock:
                injected = self._injected(name)
                if injected:
                    raise injected
                args = Args(spec, raw)
                params.update(args.as_dict())
                body = {"ok": True, "result": spec.handler(self.world, args)}
            status = 200
        except ApiError as error:
            status, body = error.error_code, error.body()
        except Exception as error:  # a sandbox bug: answer like Telegram's 500 and keep a note
            logger.exception("sandbox failed to serve %s", name)
            self.errors.append(f"{name}: {error!r}")
            status, body = 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        payload = json.dumps(body, ensure_ascii=False).encode()
        with self.world.lock:
            # Recorded from the bytes sent, so the log cannot alias live state.
            self.calls.append(Call(name, params, started, status, json.loads(payload)))
            self.world.notify()
        return status, payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as HTTP clients of the real API expect
    timeout = 120  # drop idle keep-alive connections eventually
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stall
    server: _Server

    def do_GET(self) -> None:
        with self.server.busy:
            self._serve()

    do_POST = do_GET

    def _serve(self) -> None:
        url = urlsplit(self.path)
        match = _PATH.fullmatch(url.path)
        try:
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            params.update(self._body_params())
        except ValueError as error:
            self._answer(400, ApiError(400, f"Bad Request: {error}").body())
            return
        if match is None:
            self._answer(404, NOT_FOUND.body())
            return
        status, payload = self.server.api.dispatch(match.group(1), match.group(2), params)
        self._send(status, payload)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _body_params(self) -> dict[str, Any]:
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "")
        kind = content_type.split(";")[0].strip().lower()
        if not body:
            return {}
        if kind == "application/json":
            decoded = json.loads(body)
            if not isinstance(decoded, dict):
                raise ValueError("JSON body must be an object")
            return decoded
        if kind == "application/x-www-form-urlencoded":
            return dict(parse_qsl(body.decode(), keep_blank_values=True))
        if kind == "multipart/form-data":
            return _multipart(content_type, body)
        return {}

    def _answer(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode())

    def _send(self, status: int, payload: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # A client that gave up (a cancelled long poll) is not an error.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        # Uploaded files stay bytes; form fields are text like any other encoding.
        fields[name] = payload if part.get_filename() else payload.decode()
    return fields


class _Busy:
    """Counts requests being answered, so stopping can let them finish first."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc_info) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout)


class _Server(ConnectionTrackingServer):
    def __init__(self, address: tuple[str, int], api: BotApi) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.busy = _Busy()


class BotApiServer:
    """Serves a BotApi on a loopback port from a background thread."""

    def __init__(self, api: BotApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self._api = api
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()  # stop() may come from a test and a fixture at once

    @property
    def address(self) -> tuple[str, int]:
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not running")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        with self._lifecycle:
            self._httpd = _Server(self._address, self._api)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name="telegram-sandbox", daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lifecycle:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
            if httpd is None:
                return
            httpd.shutdown()
            # Let answers in flight (long polls told to stop) go out, then close idle keep-alive
            # connections, whose threads would otherwise stay blocked on a read.
            httpd.busy.wait_idle(timeout=5)
            httpd.close_connections()
            httpd.server_close()
            if thread:
                thread.join(timeout=5)
