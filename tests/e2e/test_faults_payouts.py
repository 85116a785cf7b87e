"""A payout failing for longer than PAYOUT_FAILING_ALERT_MINUTES, in a real `telepay run`:
ChangeNOW goes away (a switchable outage in front of its emulator answers 503) as an owner's
instant payout starts. /status names the payout and the command, the metric counts the
seconds, the alert reaches the webhook and the operators' Telegram within the setting's minute;
when ChangeNOW is back the same payout completes, and the chain and ChangeNOW show it paid once."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

from telepay.clock import ManualClock
from telepay.models import PayoutStatus
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.waiting import until
from tests.e2e.faults import BOT, OPS, TOKEN, Outage, metric, scrape, status
from tests.services.payouts.conftest import KEY, World


def test_a_payout_failing_past_the_setting_is_named_alerted_and_completes_once_when_changenow_is_back(
        telegram, receiver, database_url, session_factory, tmp_path):
    operator = telegram.create_user("Olga", username="olga_ops")
    operator.send("/start")
    with DevChain() as chain, ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None,
                                               step_seconds=0.5) as changenow:
        outage = Outage(changenow.base_url)
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT, data_dir=tmp_path,
                          database_url=database_url, changenow_base_url=outage.url, chain_env=chain.env(),
                          extra={"PAYOUT_POLL_SECONDS": "0.3", "WORKER_POLL_SECONDS": "0.2",
                                 "PAYOUT_FAILING_ALERT_MINUTES": "1", "ALERT_CHECK_SECONDS": "1",
                                 "ALERT_WEBHOOK_URL": receiver.url, "OPERATOR_TOKEN": OPS,
                                 "ADMIN_CHAT_IDS": str(operator.id)})
        process = TelepayProcess(env, tmp_path / "run.log")
        world = World(session_factory, chain, changenow, ManualClock())
        changenow.add_api_key(KEY)
        try:
            process.start()
            owner = world.channel("usdt", "eth")
            outage.down = True
            payout = world.payout_of(world.pay(owner, Decimal("50")))
            failing = until(lambda: world.payout(payout.id).failing_since, "the payout failing", timeout=60)

            alert, arrived = receiver.firing("payouts", timeout=120)
            after = datetime.fromisoformat(alert["at"]) - failing
            assert f"payout(s) {payout.id} failing for over 1 min" in alert["text"]
            assert "telepay payouts show" in alert["text"]
            operator.wait_for_message(lambda m: f"payout(s) {payout.id} failing" in (m.text or ""), timeout=30)
            code, body = status(process)
            check = body["checks"]["payouts"]
            assert code == 200 and check["level"] == "degraded" and check["data"]["failing"][0]["id"] == payout.id
            assert "503" in check["data"]["failing"][0]["last_error"] or "Unavailable" in \
                check["data"]["failing"][0]["last_error"]
            assert metric(scrape(process), "telepay_payout_failing_seconds") >= 60
            assert world.payout(payout.id).status in (PayoutStatus.PENDING, PayoutStatus.EXCHANGE_REQUESTED)

            outage.down = False  # ChangeNOW is back: the payout's next retry goes through
            lifted = time.monotonic()
            until(lambda: world.payout(payout.id).status == PayoutStatus.FINISHED, "the payout finished",
                  timeout=180)
            finished_after = time.monotonic() - lifted
            resolved = receiver.wait_for(lambda b: b["alert"] == "payouts" and b["status"] == "resolved", timeout=30)
            assert resolved["level"] == "degraded"
            done = world.payout(payout.id)
            assert done.failing_since is None
            # Once: one exchange created at ChangeNOW, one funding transfer, one delivery to the owner.
            created = [c for c in changenow.calls if c.method == "POST" and c.path == "/v2/exchange"
                       and 200 <= c.status < 300]
            assert len(created) == 1
            assert len(world.host_transfers(done.payin_address, "eth")) == 1
            assert len(chain.transfers_to(owner.payout_address, "usdt")) == 1
            assert len(world.chain_txs(payout.id)) == 1
            assert process.stop()[0] == 0
        finally:
            process.kill()
            outage.close()
            world.client.close()
    print(f"\npayout failing: alert {after.total_seconds():.1f} s after it started failing "
          f"(setting: 1 min; {outage.refused} calls refused); finished {finished_after:.1f} s after ChangeNOW "
          f"came back")
