"""Internal webhooks from trusted callers: owner notifications and broadcast triggers."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from telepay.api.db import transaction
from telepay.api.state import services
from telepay.api.schemas import BroadcastTriggerIn, NotificationIn
from telepay.security.guards import INTERNAL, allowlisted, rate_limited, signed_internal, validated
from telepay.services.broadcasts import request_broadcast
from telepay.services.notifications import request_owner_notification

webhooks = Blueprint("webhooks", __name__)


@webhooks.post("/webhooks/notification")
@rate_limited(INTERNAL)
@allowlisted(INTERNAL)
@signed_internal
@validated(NotificationIn)
def notification():
    payload: NotificationIn = g.payload
    with transaction() as session:
        job_id = request_owner_notification(session, services().jobs, payload.channel_id, payload.text,
                                            payload.idempotency_key)
    return jsonify(status="queued" if job_id else "already_queued", job_id=job_id), 202


@webhooks.post("/webhooks/broadcast-trigger")
@rate_limited(INTERNAL)
@allowlisted(INTERNAL)
@signed_internal
@validated(BroadcastTriggerIn)
def broadcast_trigger():
    payload: BroadcastTriggerIn = g.payload
    svc = services()
    with transaction() as session:
        job_id = request_broadcast(session, svc.jobs, payload.channel_id, svc.clock.now())
    return jsonify(status="queued", job_id=job_id), 202
