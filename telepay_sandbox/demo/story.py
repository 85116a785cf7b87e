"""The demo's story from start to end: `main` sets the stage and plays each act in turn."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import httpx

from telepay_sandbox.demo.later import buyer_renews, month_passes
from telepay_sandbox.demo.money import donor_gives, follow_payout
from telepay_sandbox.demo.sell import buyer_pays, owner_sets_up
from telepay_sandbox.demo.stage import BOT_USERNAME, DEMO_SETTINGS, Stage
from telepay_sandbox.demo.stars import month_later, refund_through_paysupport, stars_subscription
from telepay_sandbox.demo.timeline import Timeline, quote

__all__ = ["main"]


def main(data_root: Path | str | None = None) -> int:
    """Play the story in a fresh data directory under `data_root` (default ./var); 0 if it all
    happened. The directory is removed after a good run and kept, with the log, otherwise."""
    timeline = Timeline()
    root = Path(data_root or "var")
    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="demo-", dir=root)).resolve()
    stage: Stage | None = None
    ok = False
    try:
        with Stage(data_dir) as stage:
            ok = _story(stage, timeline)
    except Exception as error:  # noqa: BLE001 - the demo reports any failure and exits 1
        timeline.say("demo", f"FAILED: {type(error).__name__}: {error}")
        if stage is not None and stage.process is not None:
            print("--- telepay log ---\n" + stage.process.log()[-6000:], file=sys.stderr)
    timeline.summary(ok)
    if ok:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"  data and log kept in {data_dir}")
    return 0 if ok else 1


def _story(stage: Stage, timeline: Timeline) -> bool:
    timeline.act("The operator starts TelePay")
    timeline.say("sandbox", f"Telegram {stage.telegram.base_url}, NOWPayments {stage.nowpayments.base_url}, "
                            f"ChangeNOW {stage.changenow.base_url}, dev chain {stage.chain.rpc_url}")
    timeline.say("sandbox", f"host wallet {stage.chain.host_wallet.address} holds "
                            f"{stage.chain.balance_eth(stage.chain.host_wallet.address).normalize():f} ETH")
    migrated = stage.telepay("db", "upgrade").strip()
    timeline.say("operator", f"telepay db upgrade -> {migrated} (embedded PostgreSQL)")
    stage.process.start()
    health = httpx.get(stage.process.base_url + "/health").json()
    timeline.say("operator", f"telepay run is up ({', '.join(f'{k}={v}' for k, v in DEMO_SETTINGS.items())}); "
                             f"GET /health -> {health}")
    alice = stage.telegram.create_user("Alice", username="alice")
    alice.send("/start")
    timeline.say("alice", "sends /start to @" + BOT_USERNAME)
    timeline.say("bot", "to alice: " + quote(alice.wait_for_message(timeout=15).text))
    timeline.fact("welcome received", "yes")

    timeline.act("1. An owner registers a channel pair and a wallet")
    shop = owner_sets_up(stage, timeline)
    timeline.act("2. A buyer pays and is let in")
    bob, payout_id = buyer_pays(stage, timeline, shop)
    timeline.act("3. The owner is paid out")
    timeline.fact("payout finished", follow_payout(stage, timeline, shop, payout_id).line())
    timeline.act("4. A donation through the keypad")
    donor_gives(stage, timeline, shop, bob, "bob", "15")
    timeline.act("5. Time moves on")
    ended = month_passes(stage, timeline, shop, bob)
    timeline.act("6. The buyer renews")
    buyer_renews(stage, timeline, shop, bob, ended)
    timeline.act("7. Telegram Stars: a Star subscription, a refund through /paysupport, a month on")
    carol, charge = stars_subscription(stage, timeline, shop)
    refund_through_paysupport(stage, timeline, shop)
    month_later(stage, timeline, shop, carol, charge)

    timeline.act("The operator looks and stops")
    report = stage.telepay("report").splitlines()
    # The crypto table's total row (the report goes on with Telegram Stars below it).
    total = next(line.split() for line in report if line.split()[:1] == ["total"])
    timeline.say("operator", f"telepay report -> {total[1]} payments, received ${total[2]}, fees ${total[3]}, "
                             f"paid out ${total[4]}, pending ${total[5]}")
    stars = report[next(n for n, line in enumerate(report) if line.startswith("Telegram Stars")):]
    timeline.say("operator", "telepay report, Stars -> " + "; ".join(" ".join(line.split()) for line in stars))
    code, seconds = stage.process.stop()
    timeline.say("operator", f"SIGTERM -> exit code {code} after {seconds:.2f} s")
    timeline.fact("clean stop", f"exit {code} in {seconds:.2f} s")
    return code == 0
