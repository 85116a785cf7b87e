"""Past one machine: 1 bot + 2 API + 3 worker processes of `telepay run` on one PostgreSQL,
against the sandbox Telegram, NOWPayments, ChangeNOW and a dev chain. Buyers pay at once (every
IPN delivered twice, at the same moment, half of the payments to each API); one worker is
SIGKILLed while it holds jobs. Every payment must be fulfilled once, every payout sent once on
chain, and no job lost (the dead worker's jobs are taken back once their lease runs out).

The pass criteria are about correctness, not speed: the machine is shared and small.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from telepay.models import (
    Channel, ChannelStatus, Invoice, InvoiceStatus, Job, JobState, Payment, Payout, PayoutStatus,
    PayoutStrategy, Subscription, Tier,
)
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import Delivery, NowPaymentsSandbox
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay_sandbox.waiting import until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = "555:scale-e2e"
BOT = "TelePayScaleBot"
KEY = "scalee2e1"
BUYERS = 12
PRICE = Decimal("20.00")


def _count(session_factory, model, *where) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def sandboxes():
    with DevChain() as chain, \
            TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()) as telegram, \
            NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret") as nowpayments, \
            ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None, step_seconds=0.5) as changenow:
        yield chain, telegram, nowpayments, changenow


def _shop(telegram, chain, session_factory) -> str:
    """A live channel paid out instantly in USDT on Ethereum (sent straight from the host wallet)."""
    owner = telegram.create_user("Scale Owner", username="scale_owner")
    open_chat = telegram.create_channel("Scale News", creator=owner)
    closed_chat = telegram.create_channel("Scale VIP", creator=owner)
    telegram.add_admin(open_chat, telegram.bot)
    telegram.add_admin(closed_chat, telegram.bot)
    address = chain.new_account().address
    with session_factory.begin() as session:
        channel = Channel(key=KEY, owner_user_id=owner.id, open_chat_id=open_chat.id, closed_chat_id=closed_chat.id,
                          open_title="Scale News", closed_title="Scale VIP", status=ChannelStatus.ACTIVE,
                          payout_currency="usdt", payout_network="eth", payout_address=address,
                          payout_strategy=PayoutStrategy.INSTANT)
        channel.tiers.append(Tier(number=1, price_usd=PRICE, days=30))
        session.add(channel)
    return address


def _processes(sandboxes, database_url, tmp_path) -> dict[str, TelepayProcess]:
    chain, telegram, nowpayments, changenow = sandboxes
    layout = {"bot": "bot", "api1": "api", "api2": "api", "w1": "worker", "w2": "worker", "w3": "worker"}
    processes = {}
    for name, roles in layout.items():
        (tmp_path / name).mkdir()
        env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT,
                          data_dir=tmp_path / name, database_url=database_url,
                          nowpayments_base_url=nowpayments.base_url, changenow_base_url=changenow.base_url,
                          chain_env=chain.env(),
                          extra={"WORKER_POLL_SECONDS": "0.2", "PAYOUT_POLL_SECONDS": "0.3", "METRICS_PORT": "0",
                                 "DB_POOL_SIZE": "4"})
        processes[name] = TelepayProcess(env, tmp_path / f"{name}.log", roles=roles)
    # The bot makes the invoices: NOWPayments calls back the first API (the test moves half to the second).
    processes["bot"].env["PUBLIC_BASE_URL"] = processes["api1"].base_url
    return processes


def _buy(telegram, session_factory, n: int):
    buyer = telegram.create_user(f"Buyer {n}")
    buyer.open_deep_link(f"https://t.me/{BOT}?start={KEY}-1")
    card = buyer.wait_for_message(lambda m: "Subscription to" in m.text, timeout=60)
    buyer.press(card, text=f"💳 Pay ${PRICE}")
    buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=60)
    with session_factory() as session:
        provider_id = session.scalars(select(Invoice.provider_invoice_id)
                                      .where(Invoice.buyer_user_id == buyer.id)).one()
    return buyer, provider_id


def _held_by(session_factory, pid: int) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Job).where(
            Job.state == JobState.RUNNING, Job.locked_by.like(f"%:{pid}:%")))


def test_one_bot_two_apis_three_workers_one_killed(sandboxes, database_url, session_factory, tmp_path):
    chain, telegram, nowpayments, changenow = sandboxes
    owner_address = _shop(telegram, chain, session_factory)
    processes = _processes(sandboxes, database_url, tmp_path)
    started = time.monotonic()
    try:
        for process in processes.values():
            process.start(wait_seconds=120)
        buyers = [_buy(telegram, session_factory, n) for n in range(BUYERS)]
        for n, (_, invoice_id) in enumerate(buyers):
            api = processes["api1" if n % 2 == 0 else "api2"]
            nowpayments.invoice(invoice_id).ipn_callback_url = api.base_url + "/webhooks/nowpayments"

        # Everyone pays at once; each IPN is delivered twice at the same moment.
        paid = []
        delivery = Delivery(repeats=2, concurrent=True)
        threads = [threading.Thread(target=lambda i=invoice_id: paid.append(nowpayments.pay(i, delivery=delivery)))
                   for _, invoice_id in buyers]
        for thread in threads:
            thread.start()

        # SIGKILL a worker while it holds jobs (or, failing that, once the load is under way).
        victim = processes["w2"]
        pid = victim.proc.pid
        deadline = time.monotonic() + 30
        while _held_by(session_factory, pid) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        held_at_kill = _held_by(session_factory, pid)
        victim.kill()
        assert victim.proc.returncode == -9
        for thread in threads:
            thread.join(timeout=120)
        assert len(paid) == BUYERS

        # The dead worker's leases would run out in 5 minutes; let them have run out.
        with session_factory.begin() as session:
            taken_back = session.execute(text(
                "UPDATE jobs SET locked_until = now() WHERE state = 'running' AND locked_by LIKE :who"),
                {"who": f"%:{pid}:%"}).rowcount

        for buyer, _ in buyers:
            buyer.wait_for_message(lambda m: "Payment received" in m.text, timeout=120)
        until(lambda: _count(session_factory, Payout, Payout.status == PayoutStatus.FINISHED) == BUYERS,
              "every payout finished", timeout=240)
        until(lambda: _count(session_factory, Job, Job.state.in_([JobState.QUEUED, JobState.RUNNING])) == 0,
              "every job done", timeout=120)
        elapsed = time.monotonic() - started
    finally:
        for process in processes.values():
            if process.proc is not None and process.proc.poll() is None:
                process.stop()
            process.kill()

    # Every payment fulfilled once.
    assert _count(session_factory, Invoice, Invoice.status == InvoiceStatus.COMPLETED) == BUYERS
    assert _count(session_factory, Payment, Payment.fulfilled_at.is_not(None)) == BUYERS
    assert _count(session_factory, Subscription) == BUYERS
    for buyer, _ in buyers:
        assert len([m for m in buyer.messages() if "Payment received" in m.text]) == 1
    # Every payout sent once, on chain, for exactly what was owed.
    with session_factory() as session:
        payouts = list(session.scalars(select(Payout)))
    transfers = chain.transfers_to(owner_address, "usdt")
    assert len(payouts) == BUYERS and len(transfers) == BUYERS
    assert sum(t.amount for t in transfers) == sum(p.to_amount for p in payouts) == chain.balance_usdt(owner_address)
    # No job lost: none dead, none left behind, each kind's count as expected.
    assert _count(session_factory, Job, Job.state == JobState.DEAD) == 0
    with session_factory() as session:
        by_kind = dict(session.execute(select(Job.kind, func.count()).group_by(Job.kind)).all())
    assert by_kind["invite.send"] == BUYERS
    ipns = len(nowpayments.ipns)
    assert all(record.ok for record in nowpayments.ipns)
    for name, process in processes.items():
        if name != "w2":
            assert "Traceback" not in process.log(), (name, process.log()[-3000:])
    print(f"\nscale e2e: {BUYERS} payments, {ipns} IPN deliveries over 2 APIs, {len(payouts)} payouts "
          f"({sum(p.to_amount for p in payouts)} USDT on chain), {sum(by_kind.values())} jobs {by_kind}; "
          f"worker w2 SIGKILLed holding {held_at_kill} running jobs, {taken_back} taken back by the others; "
          f"{elapsed:.0f} s from start to all done")
