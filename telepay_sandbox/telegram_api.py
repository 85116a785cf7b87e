"""The Bot API over HTTP: routing, request decoding, auth, injected failures, the call log.

`BotApi.dispatch` turns (token, method, raw parameters) into Telegram's answer; a `BotApi` is
also the emulator `loopback.LoopbackServer` serves (one thread per connection, so a getUpdates
long poll never blocks other calls). Requests may carry parameters in the query string and in a
JSON, urlencoded or multipart body, like Telegram accepts; werkzeug decodes the forms.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from telepay_sandbox import telegram_methods_chats, telegram_methods_messages, telegram_methods_payments
from telepay_sandbox.loopback import Request, Response
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

    def __call__(self, request: Request) -> Response:
        """The emulator's HTTP entry: `/bot<token>/<method>` with its parameters decoded."""
        match = _PATH.fullmatch(request.path)
        try:
            params = _params(request)
        except ValueError as error:
            return _answer(ApiError(400, f"Bad Request: {error}"))
        if match is None:
            return _answer(NOT_FOUND)
        status, payload = self.dispatch(match.group(1), match.group(2), params)
        return Response(status, payload, content_type="application/json")

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


def _params(request: Request) -> dict[str, Any]:
    """The query string's parameters, then the body's (a JSON object or a form)."""
    params: dict[str, Any] = request.args.to_dict()
    if request.mimetype == "application/json":
        body = request.get_data()
        decoded = json.loads(body) if body else {}
        if not isinstance(decoded, dict):
            raise ValueError("JSON body must be an object")
        params.update(decoded)
    elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params.update(request.form.to_dict())
        # Uploaded files stay bytes; form fields are text like any other encoding.
        params.update({name: upload.read() for name, upload in request.files.items()})
    return params


def _answer(error: ApiError) -> Response:
    return Response(error.error_code, json.dumps(error.body()).encode(), content_type="application/json")
