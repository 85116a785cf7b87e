"""`POST /webhooks/nowpayments`: NOWPayments' IPN. Answers well inside their 3 s: it only
records the event and queues its processing."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from telepay.api.db import services, transaction
from telepay.api.schemas import IpnIn
from telepay.security.guards import IPN, allowlisted, rate_limited, signed_ipn, validated
from telepay.services.ipn import record_ipn

nowpayments = Blueprint("nowpayments", __name__)


@nowpayments.post("/webhooks/nowpayments")
@rate_limited(IPN)
@allowlisted(IPN)
@signed_ipn
@validated(IpnIn, source="ipn")
def ipn():
    svc = services()
    raw = request.get_data(cache=True).decode("utf-8")
    with transaction() as session:
        result = record_ipn(session, g.payload, g.ipn, raw, svc.clock.now())
    return jsonify(status=result), 200
