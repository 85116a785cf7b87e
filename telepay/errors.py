"""Domain errors: one small hierarchy, translated at the edges.

The API turns them into `{"error": code, "message": ...}` with `status`; the bot turns them
into a plain message to the user. `message` is written for the person who will read it.
"""

from __future__ import annotations


class TelePayError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(TelePayError):
    code = "not_found"
    status = 404


class InvalidInput(TelePayError):
    code = "invalid"
    status = 422


class Conflict(TelePayError):
    code = "conflict"
    status = 409


class CooldownActive(TelePayError):
    """Asked again too soon; `retry_after` says in how many whole seconds it may be asked."""

    code = "cooldown"
    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
