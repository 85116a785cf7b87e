"""`telepay demo`: the product's story, played against the sandboxes on the embedded database.

It starts the real `telepay run` process (as an operator would) wired to a loopback Telegram,
then acts as people would and prints a readable timeline. It needs no accounts and no network.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from telepay.sandbox.harness import TelepayProcess, sandbox_env
from telepay.sandbox.telegram import TelegramSandbox

BOT_TOKEN = "424242:sandbox-demo-token"
BOT_USERNAME = "TelePayDemoBot"


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.facts: dict[str, str] = {}

    def say(self, who: str, what: str) -> None:
        print(f"[{time.monotonic() - self.started:6.2f}s] {who:>10} | {what}", flush=True)

    def fact(self, name: str, value: object) -> None:
        self.facts[name] = str(value)


def _quote(text: str) -> str:
    first, _, rest = text.partition("\n")
    return f"“{first}{' …' if rest else ''}”"


def main(data_root: Path | None = None) -> int:
    timeline = Timeline()
    root = Path(data_root or "var")
    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="demo-", dir=root)).resolve()
    process: TelepayProcess | None = None
    ok = False
    try:
        with TelegramSandbox(token=BOT_TOKEN, bot_username=BOT_USERNAME) as telegram:
            timeline.say("sandbox", f"Telegram Bot API emulator at {telegram.base_url}")
            env = sandbox_env(telegram_base_url=telegram.base_url, token=BOT_TOKEN,
                              bot_username=BOT_USERNAME, data_dir=data_dir)
            process = TelepayProcess(env, data_dir / "telepay.log")

            migrated = process.telepay("db", "upgrade")
            if migrated.returncode != 0:
                raise RuntimeError("db upgrade failed:\n" + migrated.stderr)
            timeline.say("operator", f"telepay db upgrade -> {migrated.stdout.strip()} (embedded PostgreSQL)")

            process.start()
            timeline.say("operator", f"telepay run is up; GET /health -> "
                                     f"{httpx.get(process.base_url + '/health').json()}")

            alice = telegram.create_user("Alice", username="alice")
            alice.send("/start")
            timeline.say("alice", "sends /start to @" + BOT_USERNAME)
            welcome = alice.wait_for_message(timeout=15)
            timeline.say("bot", "to alice: " + _quote(welcome.text))
            timeline.fact("welcome received", "yes")

            code, seconds = process.stop()
            timeline.say("operator", f"SIGTERM -> exit code {code} after {seconds:.2f}s")
            timeline.fact("clean stop", f"exit {code} in {seconds:.2f}s")
            ok = code == 0
    except Exception as error:  # noqa: BLE001 - the demo reports any failure and exits 1
        timeline.say("demo", f"FAILED: {type(error).__name__}: {error}")
        if process is not None:
            print("--- telepay log ---\n" + process.log()[-4000:], file=sys.stderr)
    finally:
        if process is not None:
            process.kill()
    print("\nSummary")
    for name, value in timeline.facts.items():
        print(f"  {name:20} {value}")
    print(f"  {'result':20} {'OK' if ok else 'FAILED'} in {time.monotonic() - timeline.started:.1f}s")
    if ok:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"  data and log kept in {data_dir}")
    return 0 if ok else 1
