"""`POST /webhooks/nowpayments`: NOWPayments' IPN. Answers well inside their 3 s: it only
records the event and queues its processing, in a transaction shared with the IPNs arriving
at the same moment (`groupcommit`)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request
from sqlalchemy.engine import Connection

from telepay.api.groupcommit import GroupCommit
from telepay.api.schemas import IpnIn
from telepay.api.state import api_state
from telepay.logs import log_context
from telepay.models.engine import ping
from telepay.security.guards import IPN, allowlisted, ipn_guarded, signed_ipn, validated
from telepay.wiring import Services
from telepay.services.ipn import ACCEPTED, DUPLICATE, IpnDelivery, record_ipns_committed

nowpayments = Blueprint("nowpayments", __name__)

# The two answers, spelled as jsonify would; made once, since serialising them per IPN was a
# measurable part of the endpoint's time under a storm.
_ANSWERS = {outcome: json.dumps({"status": outcome}, separators=(",", ":")).encode() + b"\n"
            for outcome in (ACCEPTED, DUPLICATE)}


def ipn_recorder(services: Services) -> GroupCommit[IpnDelivery, Any, Connection]:
    def commit(connection: Connection, deliveries: list[IpnDelivery]):
        outcomes = record_ipns_committed(connection, deliveries, services.clock.now())
        services.wake_worker()
        return outcomes

    def close(connection: Connection, failure: Exception | None) -> None:
        if failure is not None:
            connection.invalidate()  # its state is unknown after a failure: never reuse it
        connection.close()

    def check(connection: Connection) -> None:
        ping(connection.connection.driver_connection)

    return GroupCommit(commit, open=services.engine.connect, close=close, check=check)


@nowpayments.post("/webhooks/nowpayments")
@ipn_guarded
@allowlisted(IPN)
@signed_ipn
@validated(IpnIn, source="ipn")
def ipn():
    raw = request.get_data(cache=True).decode("utf-8")
    # Our invoice is their order_id (their own invoice_id means nothing to an operator).
    with log_context(payment_id=g.payload.payment_id, invoice_id=g.payload.order_id):
        result = api_state().ipn_recorder.submit(IpnDelivery(g.payload, g.ipn, raw))
    return Response(_ANSWERS[result], status=200, content_type="application/json")
