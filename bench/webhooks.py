"""Signed IPNs through the full stack on waitress, against a bare Flask endpoint on waitress.

Both servers run in this process with the same waitress settings and are driven by the same
client, so the ratio isolates what TelePay adds: rate limiting, allowlist, signature
verification over the canonical body, schema validation and the durable recording (event +
payment + job; concurrent IPNs share a statement and its commit). Goal: intake of at least
300 IPN/s with p99 under 50 ms (the median round of the full stack). The bare endpoint's rate is
printed beside it as context, no longer as the goal: what separates the two is one durable commit
per batch, and ~300 IPN/s is already some twenty times the ~14 sales/s that Telegram's ~30
messages/s let one bot complete (each sale sends about two messages). Rounds alternate between
the two servers and their medians are compared, since a shared machine's slow spells come and go.
`--skip-database` is a diagnostic only: it shows what the full stack does when recording costs
nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from decimal import Decimal

from flask import Flask, jsonify
from bench.common import LoadResult, accepted, any_answer, load_average, run_load
from telepay.api.state import api_state
from telepay.api.app import create_app
from telepay.api.groupcommit import GroupCommit
from telepay.api.server import ApiServer
from telepay.clock import SystemClock
from telepay.config_load import load_settings
from telepay.models import Channel, Invoice, InvoiceKind, Tier
from telepay.models.engine import make_engine, make_session_factory
from telepay.runtime import build_services, freeze_startup_heap
from telepay_sandbox.database import scratch_database
from telepay.security import nowpayments

IPN_SECRET = "bench-ipn-secret"
STATUSES = ["waiting", "confirming", "confirmed", "sending", "finished"]


def ipn(order_id: str, payment_id: int, status: str) -> bytes:
    body = {"payment_id": payment_id, "invoice_id": 4522625843, "payment_status": status,
            "pay_address": "0x9b0d3b1d6b4c1d6e0d3d9f6c3e1e9b9e5f0b2a11", "price_amount": "@15.0",
            "price_currency": "usd", "pay_amount": "@0.00612", "actually_paid": "@0.00612",
            "pay_currency": "eth", "order_id": order_id, "order_description": "Подписка ✓",
            "outcome_amount": "@0.0059", "outcome_currency": "eth",
            "fee": {"currency": "eth", "depositFee": 0, "withdrawalFee": 0, "serviceFee": "@0.00005"}}
    return re.sub(r'"@([0-9.e-]+)"', r"\1", json.dumps(body, ensure_ascii=False)).encode()


def bare_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/nowpayments")
    def accept():
        return jsonify(status="accepted")

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    return app


BARE, FULL = "bare Flask endpoint", "TelePay IPN, full stack"
GOAL_RPS, GOAL_P99_MS = 300.0, 50.0  # intake: see the module docstring for why this goal


def _url(server: ApiServer) -> str:
    return f"http://127.0.0.1:{server.port}/webhooks/nowpayments"


def _median_round(results: list[LoadResult]) -> LoadResult:
    return sorted(results, key=lambda result: result.rate)[len(results) // 2]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="IPNs per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/full rounds; medians are compared")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads, both servers")
    parser.add_argument("--skip-database", action="store_true",
                        help="diagnostic: the full stack with recording replaced by an instant 'accepted', "
                             "to see how much of the gap is the database")
    args = parser.parse_args(argv)

    with scratch_database("telepay_bench") as database_url:
        return _measure(database_url, args)


def _measure(database_url: str, args) -> dict:
    # The engine as `telepay run` makes it (pool pings included), sized to the API's threads.
    settings = load_settings({"NOWPAYMENTS_IPN_SECRET": IPN_SECRET, "WEBHOOK_SIGNING_SECRET": "unused",
                              "NOWPAYMENTS_API_KEY": "bench-key", "PUBLIC_BASE_URL": "http://127.0.0.1",
                              "NOWPAYMENTS_IPN_IPS": "127.0.0.1", "DATABASE_URL": database_url,
                              "DB_POOL_SIZE": str(args.threads)}, env_file=None)
    engine = make_engine(settings)
    try:
        services = build_services(settings, engine=engine, clock=SystemClock())
        with make_session_factory(engine).begin() as session:
            channel = Channel(key="bench", owner_user_id=1, open_chat_id=-1, closed_chat_id=-2,
                              open_title="Open", closed_title="Closed")
            channel.tiers.append(Tier(number=1, price_usd=Decimal("15.00"), days=30))
            session.add(channel)
            session.flush()
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                              tier_id=channel.tiers[0].id, buyer_user_id=2, price_usd=Decimal("15.00"), days=30)
            session.add(invoice)

        def signed(n: int) -> tuple[bytes, dict[str, str]]:
            body = ipn(invoice.id, 10_000_000 + n // len(STATUSES), STATUSES[n % len(STATUSES)])
            return body, {"Content-Type": "application/json",
                          nowpayments.SIGNATURE_HEADER: nowpayments.nowpayments_signature(IPN_SECRET, body)}

        # Every round's IPNs are new to the database (a repeat would be a cheaper "duplicate").
        warm_up = [signed(-1 - n) for n in range(min(200, args.requests))]
        rounds = [[signed(r * args.requests + n) for n in range(args.requests)] for r in range(args.rounds)]

        freeze_startup_heap()  # as `telepay run` does once it has started
        bare_server = ApiServer(bare_app(), "127.0.0.1", 0, threads=args.threads)
        full_app = create_app(settings, services)
        if args.skip_database:
            api_state(full_app).ipn_recorder = GroupCommit(
                lambda _resource, items: ["accepted"] * len(items), open=lambda: None, close=lambda *_: None)
        full_server = ApiServer(full_app, "127.0.0.1", 0, threads=args.threads)
        results: dict[str, list[LoadResult]] = {BARE: [], FULL: []}
        try:
            for server in (bare_server, full_server):
                server.start()
                run_load(_url(server), warm_up, args.concurrency, any_answer)
            # Alternating rounds: a shared machine's slow spell lands on both sides alike.
            for requests in rounds:
                results[BARE].append(run_load(_url(bare_server), requests, args.concurrency, accepted))
                results[FULL].append(run_load(_url(full_server), requests, args.concurrency, accepted))
        finally:
            bare_server.stop()
            full_server.stop()

        print(f"webhooks: {args.rounds} rounds of {args.requests} signed IPNs, {args.concurrency} clients, "
              f"waitress threads {args.threads}, load {load_average()}"
              + (" -- DIAGNOSTIC: nothing is stored" if args.skip_database else ""))
        for label in (BARE, FULL):
            for n, result in enumerate(results[label], 1):
                print(f"  round {n} " + result.line(label))
        bare, full = (_median_round(results[label]) for label in (BARE, FULL))
        print("  median  " + bare.line(BARE))
        print("  median  " + full.line(FULL))
        ratios = [f.rate / b.rate for b, f in zip(results[BARE], results[FULL])]
        ratio = full.rate / bare.rate
        print(f"  ratio full/bare throughput: {ratio:.2f} of the medians (rounds: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; context, not the goal)")
        met = full.rate >= GOAL_RPS and full.pct(99) < GOAL_P99_MS
        print(f"  intake {full.rate:.0f} IPN/s, p99 {full.pct(99):.1f} ms (goal >= {GOAL_RPS:.0f} IPN/s with p99 < "
              f"{GOAL_P99_MS:.0f} ms) -> {'MET' if met else 'NOT MET'}")
        return {"met": met, "bare_rps": bare.rate, "full_rps": full.rate, "ratio": ratio, "round_ratios": ratios,
                "full_p50_ms": full.pct(50), "full_p99_ms": full.pct(99),
                "errors": sum(result.errors for result in results[FULL])}
    finally:
        engine.dispose()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)  # waitress warns on every queued task under load
    main()
