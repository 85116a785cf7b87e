"""`GET /health`: liveness, no database, so a slow database never gets the process restarted.
`GET /status`: readiness and state for operators, behind a signature or the operator token."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from sqlalchemy import select, text

from telepay.api.db import services, transaction
from telepay.models import Job, JobState, TimerRun
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
    started = time.perf_counter()
    with transaction() as session:
        session.execute(text("SELECT 1"))
        ping_ms = round((time.perf_counter() - started) * 1000, 2)
        dead = session.scalars(
            select(Job).where(Job.state == JobState.DEAD).order_by(Job.id.desc()).limit(10)
        ).all()
        timers = session.scalars(select(TimerRun).order_by(TimerRun.name)).all()
        dead_view = [{"id": j.id, "kind": j.kind, "attempts": j.attempts, "last_error": j.last_error,
                      "finished_at": _iso(j.finished_at)} for j in dead]
        timer_view = {t.name: {"last_started_at": _iso(t.last_started_at), "last_finished_at": _iso(t.last_finished_at),
                               "last_error": t.last_error} for t in timers}
    pool = svc.engine.pool
    depth = svc.jobs.depth()
    return jsonify(
        status="ok",
        database={"ping_ms": ping_ms},
        pool={"size": pool.size(), "checked_out": pool.checkedout(), "overflow": pool.overflow(),
              "checked_in": pool.checkedin()},
        jobs=depth,
        dead_jobs={"count": sum(c.get("dead", 0) for c in depth.values()), "latest": dead_view},
        timers=timer_view,
    )
