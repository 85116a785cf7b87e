"""Clocks: the offset file lets a demo move a running process's time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from telepay.clock import ManualClock, OffsetFileClock


def test_offset_file_clock_follows_the_file(tmp_path):
    path = tmp_path / "clock-offset"
    reader, writer = OffsetFileClock(path), OffsetFileClock(path)
    assert abs(reader.now() - datetime.now(timezone.utc)) < timedelta(seconds=1)
    writer.advance(timedelta(days=3))
    ahead = reader.now() - datetime.now(timezone.utc)
    assert timedelta(days=3) - timedelta(seconds=1) < ahead < timedelta(days=3, seconds=1)
    writer.advance(timedelta(hours=1))
    assert reader.now() - datetime.now(timezone.utc) > timedelta(days=3, minutes=59)


def test_manual_clock_advances():
    clock = ManualClock()
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    assert clock.now() - before >= timedelta(minutes=5)
