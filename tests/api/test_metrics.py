"""The metrics endpoint: loopback only, scraped over real HTTP, with the facts /status checks."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from telepay.api.state import api_state
from telepay.models import Job, JobState
from telepay.ops.metrics import serve_metrics
from telepay_sandbox.harness import free_port
from tests.api.conftest import make_app


def test_a_scrape_shows_jobs_dead_jobs_health_and_the_pool(engine, session_factory):
    app = make_app(engine, ADMIN_CHAT_IDS="42")
    services = api_state(app).services
    with session_factory.begin() as session:
        dead = services.jobs.enqueue(session, "access.invite", {"payment_id": 1}, dedupe_key="m1")
        services.jobs.enqueue(session, "payment.process", {"payment_id": 2}, dedupe_key="m2")
    with session_factory.begin() as session:
        session.execute(update(Job).where(Job.id == dead).values(state=JobState.DEAD))
    services.poll_watch.too_many_requests["sendMessage"] = 3
    port = free_port()
    server = serve_metrics(services, port)
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert server.server_address[0] == "127.0.0.1"  # never on a public interface
    finally:
        server.shutdown()
        server.server_close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("telepay_jobs", (("kind", "access.invite"), ("state", "dead")))] == 1
    assert samples[("telepay_jobs", (("kind", "payment.process"), ("state", "queued")))] == 1
    assert samples[("telepay_check_level", (("check", "dead_jobs"),))] == 1
    assert samples[("telepay_check_level", (("check", "database"),))] == 0
    assert samples[("telepay_status_level", ())] == 1
    assert samples[("telepay_telegram_429_total", (("method", "sendMessage"),))] == 3
    assert samples[("telepay_subscriptions_active", ())] == 0
    assert ("telepay_db_pool_size", ()) in samples
    assert any(name == "telepay_build_info" for name, _ in samples)


def test_metrics_can_be_turned_off():
    assert serve_metrics(object(), 0) is None
