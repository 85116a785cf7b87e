"""The systemd watchdog is fed only while the worker loop and the poll supervisor turn."""

from __future__ import annotations

import socket

from telepay.ops.liveness import Beats
from telepay.ops.watchdog import Watchdog


def test_fed_only_while_the_loops_turn(tmp_path):
    now = [100.0]
    beats = Beats(clock=lambda: now[0], started=0.0)
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "n.sock"))
    dog = Watchdog(beats, {"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "30000000"})
    assert dog.interval == 30 and dog.stale() == []  # nothing run yet: nothing watched
    beats.mark("worker"), beats.mark("poll_supervisor")
    now[0] += 59
    assert dog.stale() == []
    beats.mark("poll_supervisor")
    now[0] += 2  # the worker loop froze 61 s ago
    assert dog.stale() == ["worker"]
    assert dog.notify("WATCHDOG=1") and receiver.recv(100) == b"WATCHDOG=1"
    receiver.close()


def test_without_systemd_nothing_is_sent():
    assert Watchdog(Beats(), {}).notify("READY=1") is False
