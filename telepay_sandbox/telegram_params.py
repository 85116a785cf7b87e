"""What a Bot API request may carry: per-method parameter specs, coercion, and API errors.

Each served method declares its parameters with the reference's own type names (so a test can
compare them with the Bot API reference). Values arrive as JSON values or, from form and query
encodings, as strings with nested values JSON-serialised; they are coerced by declared type, as
Telegram does. Undeclared parameters are ignored, like Telegram; a handler reading a parameter
it did not declare is a bug and fails loudly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CHAT_ID = ("Integer", "String")
INTEGER = ("Integer",)
STRING = ("String",)
BOOLEAN = ("Boolean",)
_INT_TEXT = re.compile(r"-?\d+")

# Telegram's wording when a required value is missing, where it is known; otherwise generic.
_MISSING = {
    "text": "message text is empty",
    "callback_query_id": "QUERY_ID_INVALID",
    "invite_link": "invite link is empty",
}


class ApiError(Exception):
    """A Bot API error answer: HTTP status = error_code, body shaped like Telegram's."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict:
        body: dict[str, Any] = {
            "ok": False, "error_code": self.error_code, "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def forbidden(detail: str) -> ApiError:
    return ApiError(403, f"Forbidden: {detail}")


@dataclass(frozen=True)
class Param:
    types: tuple[str, ...]
    required: bool = False


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: Mapping[str, Param]
    handler: Callable


def api_method(method: str, /, **params: Param) -> Callable:
    """Attach a MethodSpec to a handler `handler(world, args)`; the server collects them."""

    def decorate(handler: Callable) -> Callable:
        handler.spec = MethodSpec(method, params, handler)
        return handler

    return decorate


class Args:
    """A request's declared parameters, coerced; reading an undeclared one raises KeyError."""

    def __init__(self, spec: MethodSpec, raw: Mapping[str, Any]) -> None:
        self._spec = spec
        self._values: dict[str, Any] = {}
        for name, param in spec.params.items():
            value = raw.get(name)
            if value is None or value == "":
                if param.required:
                    raise bad_request(_MISSING.get(name, f"{name} is empty"))
                continue
            self._values[name] = coerce(name, value, param.types)

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self._spec.params:
            raise KeyError(f"{self._spec.name} does not declare parameter {name!r}")
        return self._values.get(name, default)

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def coerce(name: str, value: Any, types: tuple[str, ...]) -> Any:
    invalid = bad_request(f"invalid {name} specified")
    if "Integer" in types:
        if isinstance(value, bool):
            raise invalid
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
            return int(value)
        if "String" in types and isinstance(value, str):
            return value
        raise invalid
    if types == STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise invalid
    if types == BOOLEAN:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise invalid
    if types == ("Float",):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise invalid from None
    return _structured(name, value, types)


def _structured(name: str, value: Any, types: tuple[str, ...]) -> Any:
    """Arrays and objects: JSON text from form encodings, or values already decoded."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name.replace('_', ' ')} JSON object") from None
    wants_array = all(t.startswith("Array of") for t in types)
    if wants_array and not isinstance(value, list):
        raise bad_request(f"can't parse {name.replace('_', ' ')} JSON object")
    if not wants_array and not any(t.startswith("Array of") for t in types) and not isinstance(value, dict):
        raise bad_request(f"can't parse {name.replace('_', ' ')} JSON object")
    return value
