"""A deeply nested IPN body is refused, even when the process's recursion limit was raised
(some libraries raise it) — it must never reach json.loads and overflow the C stack."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.setrecursionlimit(10**6)
from telepay.security.errors import MalformedBody
from telepay.security.nowpayments import verify_ipn
for raw in (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"a":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001):
    try:
        verify_ipn("secret", raw, "ab" * 64)
    except MalformedBody:
        pass
print("refused")
"""


def test_deep_nesting_is_refused_without_crashing():
    # In a child process: if this regresses, the child dies, not the test run.
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "refused", result.stderr[-2000:]
