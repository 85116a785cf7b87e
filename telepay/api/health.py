"""`GET /health`: liveness, no database, so a slow database never gets the process restarted.
`GET /status`: what an operator needs to know, behind a signature or the operator token:
`ok`, `degraded` or `down` with the reasons (telepay.ops.checks), 503 when down, plus the
version, the pool, the queue by kind, the latest dead jobs and the timers."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, jsonify
from sqlalchemy import select
from sqlalchemy.pool import QueuePool

from telepay.api.db import transaction
from telepay.api.state import services
from telepay.models import TimerRun
from telepay.ops.checks import DOWN
from telepay.ops.version import version
from telepay.security.guards import STATUS, operator_or_signed, rate_limited

health = Blueprint("health", __name__)


@health.get("/health")
def liveness():
    return jsonify(status="ok")


def _iso(value):
    return value.isoformat() if value else None


@health.get("/status")
@rate_limited(STATUS)
@operator_or_signed
def status():
    svc = services()
    report = svc.health.run()
    body = report.as_dict()
    pool = cast(QueuePool, svc.engine.pool)  # every engine TelePay makes pools its connections
    body.update(
        version=version(),
        pool={"size": pool.size(), "checked_out": pool.checkedout(), "overflow": pool.overflow(),
              "checked_in": pool.checkedin()},
    )
    if any(c.name == "database" and c.level != DOWN for c in report.checks):  # else they would wait for it too
        body["jobs"] = svc.jobs.depth()
        with transaction() as session:
            timers = session.scalars(select(TimerRun).order_by(TimerRun.name)).all()
            body["timers"] = {t.name: {"last_started_at": _iso(t.last_started_at),
                                       "last_finished_at": _iso(t.last_finished_at),
                                       "last_error": t.last_error} for t in timers}
    return jsonify(body), 503 if report.status == DOWN else 200
