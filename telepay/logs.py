"""Logging set-up: plain text by default, JSON lines when LOG_FORMAT=json.

Everything sits on the one root handler (`make_handler`), so it covers library loggers too:
- secrets (the bot token above all: httpx logs Bot API URLs, which carry it, at DEBUG) are
  masked in the finished line, tracebacks included;
- a warning or error that repeats (a database outage fails every loop the same way) is written
  once per interval, the next line carrying how many were held back;
- ids become fields (JSON keys, or key=value after a text line): those passed with `extra=`,
  and those of the current `log_context` (the job, IPN, update or payout being worked on),
  which a filter copies onto every record; an id passed with `extra=` wins over the context's.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
import time
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping

# Record attributes that are ours to show as fields (passed with `extra=`, or from the log context).
ID_FIELDS = ("payment_id", "invoice_id", "payout_id", "job_id", "job_kind", "subscription_id", "user_id", "chat_id",
             "alert")
# A Bot API token anywhere in a line (a URL path, an error text), configured or not.
_BOT_TOKEN = re.compile(r"\b\d{3,}:[A-Za-z0-9_-]{20,}")
REPEAT_INTERVAL_SECONDS = 60.0


# The ids of the work under way in this thread or asyncio task. A task starts with a copy of its
# creator's context, and `asyncio.to_thread` carries it into the thread, so ids set where a job
# or an update starts reach every line logged on its behalf, library calls included.
_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar("telepay_log_context")
_NO_IDS: Mapping[str, object] = MappingProxyType({})


@contextlib.contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every line logged inside carries these ids as fields (None values are left out)."""
    token = _CONTEXT.set({**_CONTEXT.get(_NO_IDS), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def add_log_ids(**ids: object) -> None:
    """Add ids learnt along the way (a job's user, once loaded) to the current context. They end
    with the `log_context` this runs in: call it only inside one (a job, an update)."""
    _CONTEXT.set({**_CONTEXT.get(_NO_IDS), **{k: v for k, v in ids.items() if v is not None}})


class ContextFilter(logging.Filter):
    """Copies the current context's ids onto each record, unless the call passed its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _CONTEXT.get(_NO_IDS).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _ids(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in ID_FIELDS if hasattr(record, name)}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
               for k, v in _ids(record).items()},
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual text line, with any ids passed as fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        ids = _ids(record)
        return line + "".join(f" {k}={v}" for k, v in ids.items()) if ids else line


class MaskingFormatter(logging.Formatter):
    """Wraps a formatter and masks secrets in everything it produces."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.inner = inner
        # Longest first: a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<secret>")
        return _BOT_TOKEN.sub("<bot-token>", text)

    def format(self, record: logging.LogRecord) -> str:
        return self.mask(self.inner.format(record))


class RepeatFilter(logging.Filter):
    """Lets the first of a run of like warnings through, holds back the rest for an interval.

    "Like" means the same logger, level and message template (the arguments may differ). When
    the interval has passed, the next one is written, with the count held back since.
    """

    def __init__(self, interval: float = REPEAT_INTERVAL_SECONDS, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple, list] = {}  # key -> [last written at, held back since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            if len(self._seen) > 1000:  # bounded: a burst of distinct messages cannot grow it
                self._seen.clear()
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval:
                seen[1] += 1
                return False
            held = seen[1] if seen else 0
            self._seen[key] = [now, 0]
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {int(self.interval)} s]"
        return True


def make_handler(log_format: str = "text", secrets: Iterable[str] = (), stream=None, *,
                 collapse_repeats: bool = True) -> logging.Handler:
    """The product's handler: context ids as fields, repeats collapsed, secrets masked."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    inner = JsonFormatter() if log_format == "json" else TextFormatter()
    handler.setFormatter(MaskingFormatter(inner, secrets))
    handler.addFilter(ContextFilter())
    if collapse_repeats:
        handler.addFilter(RepeatFilter())
    return handler


def configure_logging(log_format: str = "text", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = make_handler(log_format, secrets)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; the masking covers the token, the noise is cut here.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # Python's warnings (a library's at import, say) through the same handler: a JSON line, masked,
    # instead of raw text on stderr.
    logging.captureWarnings(True)
