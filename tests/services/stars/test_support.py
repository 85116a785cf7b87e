"""/paysupport's choices and requests, and the texts /privacy and /terms answer (set by CLI)."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from telepay.cli import main
from telepay.models import Job, SupportRequest
from telepay.services.messages import ALERT_JOB
from telepay.services.notifications import NOTIFY_JOB
from telepay.services.stars.support import DEFAULTS, legal_text, open_request, recent_payments
from tests.services.stars.test_receipts import BUYER, Stars


def test_a_buyer_picks_a_payment_and_owner_and_operators_hear_about_it(session_factory):
    stars = Stars(session_factory)
    stars.channel()
    invoice = stars.checkout.open_tier(BUYER, "bob", "chan01key", 1, subscription=False)
    receipt, _ = stars.paid(invoice)
    stars.paid("not-ours", 50)
    with session_factory() as session:
        choices = recent_payments(session, BUYER)
        assert [c.ref for c in choices][::-1][0] == f"stars:{receipt.star_payment_id}"
        assert len(choices) == 2 and "⭐ 385 · VIP" in choices[-1].label
        assert recent_payments(session, BUYER + 1) == []
    with session_factory.begin() as session:
        number = open_request(session, stars.jobs, BUYER, "bob", f"stars:{receipt.star_payment_id}",
                              "I paid but the link expired", stars.clock.now())
    with session_factory.begin() as session:
        orphan = open_request(session, stars.jobs, BUYER, "bob", None, "Paid twice?", stars.clock.now())
    with session_factory() as session:
        request = session.get(SupportRequest, number)
        assert request.message == "I paid but the link expired" and request.channel_id is not None
        assert session.get(SupportRequest, orphan).payment_ref == "none"
        kinds = [job.kind for job in session.scalars(select(Job).where(Job.dedupe_key.like("%support:%")))]
        assert sorted(kinds) == sorted([ALERT_JOB, NOTIFY_JOB, ALERT_JOB])
    with session_factory.begin() as session:
        try:
            open_request(session, stars.jobs, BUYER + 1, None, f"stars:{receipt.star_payment_id}", "mine?",
                         stars.clock.now())
        except LookupError:
            pass
        else:
            raise AssertionError("someone else's payment was accepted")


def test_privacy_and_terms_have_defaults_the_operator_replaces(session_factory, database_url, tmp_path):
    with session_factory() as session:
        assert legal_text(session, "privacy") == DEFAULTS["privacy"] and "/paysupport" in DEFAULTS["terms"]
    policy = tmp_path / "privacy.txt"
    policy.write_text("Our own policy.\n")
    runner = CliRunner(env={"DATABASE_URL": database_url})
    done = runner.invoke(main, ["texts", "set", "privacy", str(policy)])
    assert done.exit_code == 0, done.output
    assert runner.invoke(main, ["texts", "show", "privacy"]).output == "Our own policy.\n"
    with session_factory() as session:
        assert legal_text(session, "privacy") == "Our own policy." and legal_text(session, "terms") == DEFAULTS["terms"]
    policy.write_text("")
    assert runner.invoke(main, ["texts", "set", "privacy", str(policy)]).exit_code != 0
