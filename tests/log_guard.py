"""The bot token never reaches a log: checked over every log of a test session.

What is searched, all in one directory for the session (`telepay_sandbox.harness.LOG_DIR_VARIABLE`):
- the log of every `telepay` process a test starts through the harness (`TelepayProcess`,
  `kept_log`), and the output of every one-shot command it runs or a test read from a pipe
  (`keep_output`);
- every record logged in this process that reaches the root logger (at the run's level:
  warnings and errors unless `log_level` is set), but the emulators' own, written through the
  product's own handler (formatted and masked as in production, but with no secret configured:
  a token shaped like a real one is masked by its shape, the sandbox's short tokens are not, so
  one that reaches a log line here is found). A line `=== <test>` marks where each test begins.

At the end every file there is searched for each bot token the tests noted (the sandboxes note
theirs: `harness.note_token`, in this process and, through a file there, in the processes it
started) and for anything shaped like a Bot API token; a find fails the
session, naming the file and line. The directory is kept under pytest's temporary directory
(`process-logs`), so the logs of the last few sessions stay there to be read.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pytest

from telepay.logs import make_handler
from telepay_sandbox.harness import LOG_DIR_VARIABLE, TOKENS_FILE, noted_tokens

# A Bot API token as Telegram issues them; the product masks these by their shape, so one found
# in a log went around the masking. (Sandbox tokens are mostly shorter: found by name.)
TOKEN_SHAPE = re.compile(r"\b\d{3,}:[A-Za-z0-9_-]{20,}")
IN_PROCESS_LOG = "in-process.log"
GUARD = "telepay-log-guard"


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    token: str
    test: str  # the test that was running, for the in-process log
    text: str  # the line, its tokens cut short (the file may be cleaned away before it is read)

    def __str__(self) -> str:
        where = f" (during {self.test})" if self.test else ""
        return f"{self.path}:{self.line}: bot token {_short(self.token)}{where}\n    {self.text.strip()[:300]}"


def _short(token: str) -> str:
    """Enough of a token to know which it is, not the whole."""
    return token[: token.index(":") + 4] + "…"


def find_leaks(directory: Path, noted: Iterable[str] = ()) -> list[Leak]:
    """Every line of every file in `directory` that holds a noted token (`noted`, or in the
    directory's tokens file) or a token-shaped string."""
    tokens_file = directory / TOKENS_FILE
    tokens = set(noted) | (set(tokens_file.read_text().split()) if tokens_file.exists() else set())
    tokens = sorted(tokens, key=len, reverse=True)
    leaks = []
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.name != TOKENS_FILE):
        test = ""
        with path.open(errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if path.name == IN_PROCESS_LOG and line.startswith("=== "):
                    test = line[4:].strip()
                    continue
                found = [t for t in tokens if t in line]
                found += [s for s in TOKEN_SHAPE.findall(line) if not any(s in t or t in s for t in found)]
                shown = line
                for token in found:
                    shown = shown.replace(token, _short(token))
                leaks += [Leak(path, number, token, test, shown) for token in found]
    return leaks


class LogGuard:
    def __init__(self) -> None:
        self.directory: Path | None = None
        self.handler: logging.StreamHandler | None = None
        self.leaks: list[Leak] = []

    def start(self, directory: Path) -> None:
        self.directory = directory
        os.environ[LOG_DIR_VARIABLE] = str(directory)
        stream = (directory / IN_PROCESS_LOG).open("a", encoding="utf-8", errors="replace", buffering=1)
        # Every line whole: a repeat held back could be the one line that carries a token.
        self.handler = make_handler("text", secrets=(), stream=stream, collapse_repeats=False)
        # The emulators stand for Telegram's side, whose own request log names the token in its paths.
        self.handler.addFilter(lambda record: not record.name.startswith("telepay_sandbox"))
        logging.getLogger().addHandler(self.handler)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.handler is None:
            return
        root = logging.getLogger()
        if self.handler not in root.handlers:  # a CLI test ran `configure_logging`, which replaces them
            root.addHandler(self.handler)
        self.mark(nodeid)

    def mark(self, nodeid: str) -> None:
        """Say in the in-process log which test the lines below come from."""
        assert self.handler is not None
        self.handler.acquire()
        try:
            self.handler.stream.write(f"=== {nodeid}\n")
        finally:
            self.handler.release()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.directory is None:
            return
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        os.environ.pop(LOG_DIR_VARIABLE, None)
        self.leaks = find_leaks(self.directory, noted_tokens())
        if self.leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.directory is None:
            return
        if not self.leaks:
            terminalreporter.write_line(f"log guard: no bot token in the session's logs ({self.directory})")
            return
        terminalreporter.section("bot token found in a log", sep="=", red=True, bold=True)
        for leak in self.leaks[:50]:
            terminalreporter.write_line(str(leak))
        if len(self.leaks) > 50:
            terminalreporter.write_line(f"... and {len(self.leaks) - 50} more")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LogGuard(), GUARD)


@pytest.fixture(scope="session", autouse=True)
def _session_log_directory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Autouse and session-wide, so it is set up before any sandbox notes its token."""
    guard = request.config.pluginmanager.get_plugin(GUARD)
    if guard.directory is None:
        guard.start(tmp_path_factory.mktemp("process-logs", numbered=False))
        # The first test began before the log did ("<nodeid> (setup)").
        guard.mark(os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0])
