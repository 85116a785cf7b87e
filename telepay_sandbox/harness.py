"""Run the real `telepay` process against the sandboxes: used by the demo, e2e tests and benchmarks.

The process is started exactly as an operator would (`python -m telepay run`), configured only
through its environment, so what is exercised is the product, not a test double of it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A directory for the logs of a test session (tests/log_guard.py sets it and checks every file
# in it for the bot tokens noted there). Unset, as in the demo, nothing below changes anything.
LOG_DIR_VARIABLE = "TELEPAY_SANDBOX_LOG_DIR"
TOKENS_FILE = "bot-tokens.txt"


def _log_dir() -> Path | None:
    directory = os.environ.get(LOG_DIR_VARIABLE)
    return Path(directory) if directory else None


_NOTED: set[str] = set()  # this process's, for a check in this process (the file is for all of them)


def note_token(token: str | None) -> None:
    """Note a bot token a test uses, so the session's check looks for it in every log."""
    if not token:
        return
    _NOTED.add(token)
    directory = _log_dir()
    if directory is not None:
        with (directory / TOKENS_FILE).open("a") as tokens:
            tokens.write(token + "\n")


def noted_tokens() -> set[str]:
    return set(_NOTED)


def _label(name: str) -> str:
    """The running test's name (and `name`), fit for a file name."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{test}-{name}")[-120:] + "-"


def kept_log(path: Path) -> Path:
    """`path`, for a process's log. In a test session the log is written in the session's log
    directory and `path` links to it: the test reads it where it asked for it, and it outlives
    the test's own directory for the session's check."""
    path = Path(path)
    directory = _log_dir()
    if directory is None or path.is_symlink():
        return path
    fd, kept = tempfile.mkstemp(prefix=_label(path.name), suffix=".log", dir=directory)
    with os.fdopen(fd, "wb") as copy:
        if path.exists():  # written before: kept too, then replaced by the link
            copy.write(path.read_bytes())
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(kept)
    return path


def keep_output(name: str, output: str) -> None:
    """Keep the output of a process a test read through a pipe, for the session's check."""
    directory = _log_dir()
    if directory is not None and output:
        fd, _ = tempfile.mkstemp(prefix=_label(name), suffix=".log", dir=directory)
        with os.fdopen(fd, "w", errors="replace") as kept:
            kept.write(output)


class TelepayProcess:
    """`telepay run` as a child process with a given environment; its log goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, cwd: Path | None = None, roles: str | None = None):
        self.env = env
        self.roles = roles  # `--roles`; None: the default, all of them
        self.run_args: tuple[str, ...] = ()  # more `telepay run` options for the next start (`--no-payouts`)
        self.log_path = kept_log(log_path)
        note_token(env.get("TELEGRAM_BOT_TOKEN"))
        # Run from the data directory so a developer's own .env is never picked up.
        self.cwd = cwd or Path(env["TELEPAY_DATA_DIR"])
        self.proc: subprocess.Popen | None = None
        self.port = int(env["HTTP_PORT"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def telepay(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a one-shot CLI command (e.g. `db upgrade`) with the same environment."""
        result = subprocess.run([sys.executable, "-m", "telepay", *args], env=self.env, cwd=self.cwd,
                                capture_output=True, text=True, timeout=timeout)
        keep_output("telepay-" + "-".join(args[:2]), f"$ telepay {' '.join(args)}\n{result.stdout}{result.stderr}")
        return result

    def start(self, wait_seconds: float = 60) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        roles = ["--roles", self.roles] if self.roles else []
        started_at = self.log_path.stat().st_size
        self.proc = subprocess.Popen([sys.executable, "-m", "telepay", "run", *roles, *self.run_args], env=self.env,
                                     cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        serves_api = self.roles is None or "api" in self.roles
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"telepay exited with {self.proc.returncode}:\n{self.log()}")
            if serves_api:
                try:
                    if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            elif b"telepay is running" in self.log_path.read_bytes()[started_at:]:
                return  # no API to ask: its log says when it is up
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"telepay did not answer /health within {wait_seconds} s:\n{self.log()}")

    def stop(self, timeout: float = 15) -> tuple[int, float]:
        """SIGTERM, then wait. Returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# Port 9 (discard): a loopback address where, in practice, nothing answers.
_NOTHING_LISTENS = "http://127.0.0.1:9"
# keccak256 of "telepay sandbox unfunded wallet": a key that holds nothing anywhere.
_UNFUNDED_KEY = "0x31b69b129d5abc293150727133d1516b2187153907fb53ddc8159a8c30dd0b4f"


def sandbox_env(
    *,
    telegram_base_url: str,
    token: str,
    bot_username: str,
    data_dir: Path,
    database_url: str | None = None,
    http_port: int | None = None,
    nowpayments_base_url: str | None = None,
    changenow_base_url: str | None = None,
    chain_env: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a process wired to the sandboxes. Values are the sandbox's own,
    passed explicitly; the product itself has no fallbacks for any of them."""
    note_token(token)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(data_dir)),
        "LANG": "C.UTF-8",
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_BOT_USERNAME": bot_username,
        "TELEGRAM_API_BASE_URL": telegram_base_url,
        "TELEPAY_DATA_DIR": str(Path(data_dir).resolve()),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port or free_port()),
        "METRICS_PORT": str(free_port()),  # never the default: many processes run side by side
        "WEBHOOK_SIGNING_SECRET": "sandbox-webhook-signing-secret",
        "NOWPAYMENTS_API_KEY": "sandbox-nowpayments-key",
        "NOWPAYMENTS_IPN_SECRET": "sandbox-nowpayments-ipn-secret",
        "WORKER_POLL_SECONDS": "0.5",
        # The sandbox delivers IPNs from loopback, not from NOWPayments' published addresses.
        "NOWPAYMENTS_IPN_IPS": "127.0.0.1",
    }
    # The process's own API stands in for the public HTTPS base NOWPayments calls back.
    env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{env['HTTP_PORT']}"
    if nowpayments_base_url:
        env["NOWPAYMENTS_BASE_URL"] = nowpayments_base_url
    # Payouts: the ChangeNOW sandbox and a dev chain (`DevChain.env()`) when the caller runs them;
    # otherwise loopback addresses where nothing listens, so the process starts and its payouts
    # simply wait (retrying) instead of reaching a real provider or chain.
    env["CHANGENOW_API_KEY"] = "sandbox-changenow-key"
    env["CHANGENOW_BASE_URL"] = changenow_base_url or _NOTHING_LISTENS
    env.update(chain_env or {"ETH_RPC_URL": _NOTHING_LISTENS + "/", "HOST_WALLET_PRIVATE_KEY": _UNFUNDED_KEY,
                             "USDT_CONTRACT_ADDRESS": "0x" + "00" * 19 + "01"})
    if database_url:
        env["DATABASE_URL"] = database_url
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra or {})
    return env
