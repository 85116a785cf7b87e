"""The restore procedure of docs/deploy.md against the real `telepay run`: a payout is paid after
the backup was taken; the database is restored; `telepay run --no-payouts`; `telepay payouts
reconcile` finds the payout, `--apply` records it finished, a second run exits 0; payouts resume
and the restored job sends nothing: one transfer on the chain."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from telepay.clock import ManualClock
from telepay.models import Job, JobState, PayoutStatus
from telepay.services.payouts import PAYOUT_JOB
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay_sandbox.waiting import until
from tests.services.payouts.conftest import World
from tests.services.payouts.test_reconcile import _backup_all, _restore_all

TOKEN = "334:restore-e2e"
WAIT = 40.0


def _open_payout_jobs(world) -> list[int]:
    with world.session_factory() as session:
        return list(session.scalars(select(Job.id).where(
            Job.kind == PAYOUT_JOB, Job.state.in_([JobState.QUEUED, JobState.RUNNING]))))


def test_restore_then_reconcile_then_resume_pays_once(database_url, session_factory, tmp_path):
    with DevChain() as chain, TelegramSandbox(token=TOKEN, bot_username="RestoreE2EBot",
                                              rate_limits=RateLimits.off()) as telegram, \
            ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None, step_seconds=0.5) as changenow:
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username="RestoreE2EBot",
                          data_dir=tmp_path, database_url=database_url, changenow_base_url=changenow.base_url,
                          chain_env=chain.env(), extra={"PAYOUT_POLL_SECONDS": "0.3", "WORKER_POLL_SECONDS": "0.2"})
        world = World(session_factory, chain, changenow, ManualClock())
        process = TelepayProcess(env, tmp_path / "telepay.log")
        try:
            process.start()
            settled = world.payout_of(world.pay(world.channel("eth", "eth"), Decimal("30")))
            until(lambda: world.payout(settled.id).status == PayoutStatus.FINISHED, "a payout before the backup",
                  timeout=WAIT)
            owner = world.channel("usdt", "eth")
            process.stop()
            payout = world.payout_of(world.pay(owner, Decimal("60")))
            backup = _backup_all(world)  # the payout is pending in the backup
            process.start()
            until(lambda: world.payout(payout.id).status == PayoutStatus.FINISHED, "the payout", timeout=WAIT)
            paid = world.payout(payout.id)
            process.stop()

            _restore_all(world, backup)
            process.run_args = ("--no-payouts",)
            process.start()
            looked = process.telepay("payouts", "reconcile")
            assert looked.returncode == 1 and "verdict  fix" in looked.stdout, looked.stdout + looked.stderr
            applied = process.telepay("payouts", "reconcile", "--apply")
            assert applied.returncode == 1 and "-> finished" in applied.stdout, applied.stdout + applied.stderr
            again = process.telepay("payouts", "reconcile")
            assert again.returncode == 0, again.stdout + again.stderr
            assert world.payout(payout.id).exchange_id == paid.exchange_id
            process.stop()

            process.run_args = ()
            process.start()
            until(lambda: not _open_payout_jobs(world), "the restored payout job", timeout=WAIT)
            code, _ = process.stop()
            assert code == 0 and "Traceback" not in process.log()
            assert world.payout(payout.id).status == PayoutStatus.FINISHED
            assert len(world.host_transfers(paid.payin_address, "eth")) == 1
            assert len(chain.transfers_to(owner.payout_address, "usdt")) == 1
        finally:
            process.kill()
            world.client.close()
