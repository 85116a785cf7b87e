"""Time as a dependency: services ask a clock, so tests and the demo can move time forward."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that follows real time from a chosen start, plus whatever offset it is advanced by."""

    def __init__(self, offset: timedelta = timedelta(0)):
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(timezone.utc) + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


class OffsetFileClock:
    """Real time plus a number of seconds read from a file: how the sandboxed demo and the
    end-to-end tests move a running process's time forward without touching its rows.

    Set only through CLOCK_OFFSET_FILE, which production never sets. The file is re-read when
    it changes; a missing or empty file means no offset.
    """

    def __init__(self, path):
        from pathlib import Path

        self._path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[float, timedelta] = (-1.0, timedelta(0))

    def _offset(self) -> timedelta:
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return timedelta(0)
        with self._lock:
            if mtime != self._seen[0]:
                text = self._path.read_text().strip()
                self._seen = (mtime, timedelta(seconds=float(text)) if text else timedelta(0))
            return self._seen[1]

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._offset()

    def advance(self, delta: timedelta) -> None:
        """For the process that owns the file (the demo): move every reader's time forward."""
        current = self._offset() + delta
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(str(current.total_seconds()))
        tmp.replace(self._path)  # readers see the old or the new offset, never half of it
