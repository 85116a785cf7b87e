"""`telepay demo` runs the story on the embedded database and closes with an OK summary."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import sys; from telepay.demo import main; "
                             f"sys.exit(main({str(tmp_path)!r}))"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "welcome received     yes" in result.stdout
    assert "result               OK" in result.stdout
