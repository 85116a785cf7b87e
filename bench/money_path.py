"""Throughput of the money path across processes: paid IPNs in, invites and payouts out.

One `telepay run --roles bot` process makes the invoices, one `--roles api` process takes the
IPNs, and 1 or 3 `--roles worker` processes do the rest, all on one fresh PostgreSQL database,
against the sandbox Telegram (flood limits off), NOWPayments, ChangeNOW and a dev chain. Buyers
get their invoices through the bot first (not timed); then all of them pay at once (five signed
IPNs each) and the clock runs until every buyer has their invite, and until every owner share
has been paid out on chain (instant strategy, USDT on Ethereum sent from the host wallet).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, func, select

from bench.common import load_average, pct
from telepay.models import Channel, ChannelStatus, Invoice, Payout, PayoutStatus, PayoutStrategy, Tier
from telepay.models.engine import make_session_factory
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.database import scratch_database
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.nowpayments import NowPaymentsSandbox
from telepay_sandbox.telegram import RateLimits, TelegramSandbox

TOKEN = "7100000005:bench-money-path"
BOT = "TelePayBenchMoneyBot"
KEY = "benchmp1"
PRICE = Decimal("20.00")


def _shop(telegram, chain, session_factory) -> None:
    owner = telegram.create_user("Bench Owner", username="bench_mp_owner")
    open_chat = telegram.create_channel("Bench MP News", creator=owner)
    closed_chat = telegram.create_channel("Bench MP VIP", creator=owner)
    telegram.add_admin(open_chat, telegram.bot)
    telegram.add_admin(closed_chat, telegram.bot)
    with session_factory.begin() as session:
        channel = Channel(key=KEY, owner_user_id=owner.id, open_chat_id=open_chat.id, closed_chat_id=closed_chat.id,
                          open_title="Bench MP News", closed_title="Bench MP VIP", status=ChannelStatus.ACTIVE,
                          payout_currency="usdt", payout_network="eth", payout_address=chain.new_account().address,
                          payout_strategy=PayoutStrategy.INSTANT)
        channel.tiers.append(Tier(number=1, price_usd=PRICE, days=30))
        session.add(channel)


def _buy(telegram, session_factory, n: int):
    buyer = telegram.create_user(f"Buyer {n}")
    buyer.open_deep_link(f"https://t.me/{BOT}?start={KEY}-1")
    card = buyer.wait_for_message(lambda m: "Subscription to" in m.text, timeout=60)
    buyer.press(card, text=f"💳 Pay ${PRICE}")
    buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=60)
    with session_factory() as session:
        return buyer, session.scalars(select(Invoice.provider_invoice_id)
                                      .where(Invoice.buyer_user_id == buyer.id)).one()


def _finished_payouts(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Payout).where(Payout.status == PayoutStatus.FINISHED))


def one_run(payments: int, workers: int) -> dict:
    with scratch_database("telepay_bench") as database_url, DevChain() as chain, \
            TelegramSandbox(token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off()) as telegram, \
            NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret") as nowpayments, \
            ChangeNowSandbox("sandbox-changenow-key", chain, rate_limits=None, step_seconds=0.5) as changenow, \
            tempfile.TemporaryDirectory(prefix="telepay-bench-mp-") as tmp:
        engine = create_engine(database_url)
        session_factory = make_session_factory(engine)
        layout = {"bot": "bot", "api": "api", **{f"w{n}": "worker" for n in range(1, workers + 1)}}
        processes: dict[str, TelepayProcess] = {}
        try:
            _shop(telegram, chain, session_factory)
            for name, roles in layout.items():
                (Path(tmp) / name).mkdir()
                env = sandbox_env(telegram_base_url=telegram.base_url, token=TOKEN, bot_username=BOT,
                                  data_dir=Path(tmp) / name, database_url=database_url,
                                  nowpayments_base_url=nowpayments.base_url, changenow_base_url=changenow.base_url,
                                  chain_env=chain.env(),
                                  extra={"WORKER_POLL_SECONDS": "0.2", "PAYOUT_POLL_SECONDS": "0.3",
                                         "METRICS_PORT": "0", "DB_POOL_SIZE": "4"})
                processes[name] = TelepayProcess(env, Path(tmp) / f"{name}.log", roles=roles)
            processes["bot"].env["PUBLIC_BASE_URL"] = processes["api"].base_url
            for process in processes.values():
                process.start(wait_seconds=120)
            buyers = [_buy(telegram, session_factory, n) for n in range(payments)]
            load_before = load_average()
            mark = telegram.mark()
            started = time.time()
            threads = [threading.Thread(target=nowpayments.pay, args=(invoice_id,)) for _, invoice_id in buyers]
            for thread in threads:
                thread.start()
            invites = []
            for buyer, _ in buyers:
                call = telegram.wait_for_call(
                    "sendMessage", lambda c, b=buyer: str(c.params.get("chat_id")) == str(b.id)
                    and str(c.params.get("text", "")).startswith("✅ Payment received"), timeout=300, after=mark)
                invites.append(call.time - started)
            for thread in threads:
                thread.join()
            while _finished_payouts(session_factory) < payments:
                time.sleep(0.05)
            paid_out = time.time() - started
            load_after = load_average()
        except BaseException:
            for name, process in processes.items():  # what went wrong is in the processes' logs
                print(f"--- {name} (last lines of its log)\n" + "\n".join(process.log().splitlines()[-25:]))
            raise
        finally:
            for process in processes.values():
                try:
                    process.stop(timeout=30)
                except Exception:  # noqa: BLE001 - a benchmark still reports; the process is killed below
                    pass
                process.kill()
            engine.dispose()
    return {"workers": workers, "payments": payments, "invites_s": max(invites), "payouts_s": paid_out,
            "invite_p50_s": pct(invites, 50), "load": f"{load_before} -> {load_after}"}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=24, help="buyers who pay at the same moment")
    parser.add_argument("--workers", default="1,3", help="worker process counts to compare")
    args = parser.parse_args(argv)
    results = [one_run(args.payments, int(n)) for n in args.workers.split(",")]
    print(f"money_path: {args.payments} payments at once; 1 bot + 1 API process + N worker processes")
    for r in results:
        print(f"  {r['workers']} worker(s): all invites in {r['invites_s']:6.2f} s "
              f"({r['payments'] / r['invites_s']:5.1f} sales/s; median invite at {r['invite_p50_s']:.2f} s), "
              f"all payouts on chain in {r['payouts_s']:6.2f} s ({r['payments'] / r['payouts_s']:5.2f} payouts/s); "
              f"load average {r['load']}")
    return results


if __name__ == "__main__":
    main()
