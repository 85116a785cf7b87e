"""The end of a subscription through the sandbox Telegram, with time moved by the clock: the sweep
finds what is due by the index, in batches, once; removals (ban + unban) and their message with
a Renew button; the user who left, who blocked the bot, who renewed at the last moment; a channel
whose rights were lost; 429s; grace; reminders once per term; one sweep at a time."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from telepay.models import ChannelStatus, JobState, Subscription, SubscriptionStatus
from telepay_sandbox.telegram import RateLimits
from telepay.services import lifecycle
from telepay.services.lifecycle.sweep import ADVISORY_LOCK_KEY
from telepay.services.messages import DIRECT_JOB
from tests.services.lifecycle_rig import Rig

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def rig(session_factory):
    made = Rig(session_factory, batch_size=2, admin_chat_ids=())
    yield made
    made.close()
    assert made.telegram.errors == []


def test_due_subscriptions_are_found_in_batches_expired_once_and_removed(rig):
    channel_id, _, closed = rig.channel()
    due = [rig.member(channel_id, closed, f"Due {n}", expires_in=MINUTE * (n + 1)) for n in range(5)]
    later = rig.member(channel_id, closed, "Later", expires_in=DAY * 10)

    rig.clock.advance(10 * MINUTE)
    result = rig.sweep_and_work()

    assert (result.expired, result.removals_queued) == (5, 5)  # three batches of two
    assert rig.sweep.run_once().expired == 0  # nothing twice
    for person, subscription_id in due:
        assert rig.subscription(subscription_id).status == SubscriptionStatus.EXPIRED
        # Removed, and not banned: they may come back by paying.
        assert person.status_in(closed) == "left"
        ended = person.wait_for_message(lambda m: "has ended" in m.text)
        assert ended.buttons == [{"text": "🔄 Renew", "callback_data": f"buy:{rig.channel_row(channel_id).key}"}]
    assert rig.subscription(later[1]).status == SubscriptionStatus.ACTIVE and later[0].status_in(closed) == "member"
    assert [j.state for j in rig.jobs_of(lifecycle.EXPIRE_JOB)] == [JobState.DONE] * 5
    bans = rig.telegram.calls_to("banChatMember")
    assert len(bans) == 5 and len(rig.telegram.calls_to("unbanChatMember")) == 5


def test_the_batch_query_reads_the_partial_index(rig, session_factory):
    """At a realistic size, with the statistics PostgreSQL keeps: 20,000 subscriptions, most of
    them ended or running, a few due. (On an empty table the plan says nothing either way.)"""
    channel_id, _, _ = rig.channel()
    with session_factory.begin() as session:
        session.execute(text(
            "INSERT INTO subscriptions (channel_id, user_id, status, started_at, expires_at, star_renews, updated_at) "
            "SELECT :channel, n, CASE WHEN mod(n, 4) = 0 THEN 'active' ELSE 'expired' END, now(), "
            "now() + CASE WHEN mod(n, 100) = 0 THEN interval '-1 day' ELSE interval '10 days' END, false, now() "
            "FROM generate_series(1, 20000) AS n"), {"channel": channel_id})
        session.execute(text("ANALYZE subscriptions"))
    with session_factory() as session:
        plan = "\n".join(session.execute(text(
            "EXPLAIN SELECT id FROM subscriptions WHERE status = 'active' AND expires_at <= now() "
            "ORDER BY expires_at LIMIT 500 FOR UPDATE SKIP LOCKED")).scalars())
    assert "ix_subscriptions_due" in plan, plan


def test_a_user_who_left_or_blocked_the_bot_is_still_removed_without_errors(rig):
    channel_id, _, closed = rig.channel()
    left, left_sub = rig.member(channel_id, closed, "Leaver", expires_in=MINUTE)
    blocker, blocker_sub = rig.member(channel_id, closed, "Blocker", expires_in=MINUTE)
    left.leave(closed)
    blocker.block_bot()

    rig.clock.advance(2 * MINUTE)
    rig.sweep_and_work()

    assert left.status_in(closed) == "left" and blocker.status_in(closed) == "left"
    assert "has ended" in left.wait_for_message().text
    assert blocker.messages() == []
    assert [j.state for j in rig.jobs_of(lifecycle.EXPIRE_JOB)] == [JobState.DONE, JobState.DONE]
    assert all(j.last_error is None for j in rig.jobs_of(lifecycle.EXPIRE_JOB))


def test_a_renewal_between_sweep_and_removal_keeps_the_paying_member(rig):
    channel_id, _, closed = rig.channel()
    person, subscription_id = rig.member(channel_id, closed, "Last minute", expires_in=MINUTE)
    rig.clock.advance(2 * MINUTE)
    assert rig.sweep.run_once().removals_queued == 1
    rig.renew(subscription_id, days=30)  # the payment lands before the worker gets to the removal

    rig.work()

    assert person.status_in(closed) == "member" and person.messages() == []
    assert rig.telegram.calls_to("banChatMember") == []
    renewed = rig.subscription(subscription_id)
    assert renewed.status == SubscriptionStatus.ACTIVE and renewed.expires_at > rig.clock.now() + 29 * DAY
    assert rig.jobs_of(lifecycle.EXPIRE_JOB)[0].state == JobState.DONE

    # The renewed term ends in its turn, under a new dedupe key, and is removed then.
    rig.clock.advance(31 * DAY)
    assert rig.sweep_and_work().removals_queued == 1
    assert person.status_in(closed) == "left"


def test_finding_5_owner_ban_survives_expiry(rig):
    """The attack: the owner bans a subscriber; when their term ends the removal (ban + unban)
    lifted that ban. Now a user the owner banned is left banned; a member is removed and may return."""
    channel_id, _, closed = rig.channel()
    banned, banned_sub = rig.member(channel_id, closed, "Banned by owner", expires_in=MINUTE)
    member, member_sub = rig.member(channel_id, closed, "Plain member", expires_in=MINUTE)
    rig.telegram.set_member_status(closed, banned, "kicked")
    rig.clock.advance(2 * MINUTE)

    assert rig.sweep_and_work().removals_queued == 2

    assert banned.status_in(closed) == "kicked"
    assert member.status_in(closed) == "left"
    unbans = [int(c.params["user_id"]) for c in rig.telegram.calls_to("unbanChatMember")]
    assert unbans == [member.id]
    assert rig.subscription(banned_sub).removal_banned_for is None
    assert rig.subscription(member_sub).removal_banned_for == rig.subscription(member_sub).expires_at
    assert all(j.state == JobState.DONE for j in rig.jobs_of(lifecycle.EXPIRE_JOB))


def test_a_ban_the_bot_made_before_a_crash_is_lifted_on_the_retry(rig):
    """Between the bot's ban and its unban the worker dies: the retry finds the user banned, but
    the marker written before the ban says the ban is the bot's own, so it is lifted."""
    channel_id, _, closed = rig.channel()
    person, subscription_id = rig.member(channel_id, closed, "Crashed", expires_in=MINUTE)
    rig.clock.advance(2 * MINUTE)
    assert rig.sweep.run_once().removals_queued == 1
    with rig.session_factory.begin() as session:  # what the first run had done when it died
        subscription = session.get(Subscription, subscription_id)
        subscription.removal_banned_for = subscription.expires_at
    rig.telegram.set_member_status(closed, person, "kicked")

    rig.work()

    assert person.status_in(closed) == "left"


def test_lost_rights_tell_owner_and_operators_once_and_removals_wait_for_the_rights(session_factory):
    rig = Rig(session_factory, admin_chat_ids=(424242,))
    try:
        lost_id, owner, lost_closed = rig.channel("Lost")
        fine_id, _, fine_closed = rig.channel("Fine")
        stuck = [rig.member(lost_id, lost_closed, f"Stuck {n}", expires_in=MINUTE) for n in range(2)]
        other, _ = rig.member(fine_id, fine_closed, "Other", expires_in=MINUTE)
        rig.telegram.set_member_status(lost_closed, rig.telegram.bot, "member")  # owner demoted the bot

        rig.clock.advance(2 * MINUTE)
        rig.sweep_and_work()

        # The other channel's removal went on.
        assert other.status_in(fine_closed) == "left" and "has ended" in other.wait_for_message().text
        # This channel: marked, owner told once (two failed removals), operators alerted once.
        assert rig.channel_row(lost_id).status == ChannelStatus.LOST_RIGHTS
        to_owner = [j for j in rig.jobs_of(DIRECT_JOB) if j.payload["chat_id"] == owner.id]
        assert len(to_owner) == 1  # two failed removals, one message
        assert "is paused" in to_owner[0].payload["text"] and "can't remove subscribers" in to_owner[0].payload["text"]
        alerts = [j for j in rig.jobs_of(DIRECT_JOB) if j.payload["chat_id"] == 424242]
        assert len(alerts) == 1 and "paused" in alerts[0].payload["text"]
        # Nobody was removed or told, and nothing was dropped: both jobs wait for a retry.
        for person, _ in stuck:
            assert person.status_in(lost_closed) == "member" and person.messages() == []
        waiting = rig.jobs_of(lifecycle.EXPIRE_JOB)
        assert sorted(j.state for j in waiting) == [JobState.DONE, JobState.QUEUED, JobState.QUEUED]

        # The owner restores the bot's rights; the retries catch up.
        rig.telegram.add_admin(lost_closed, rig.telegram.bot)
        rig.clock.advance(2 * MINUTE)
        rig.work()
        for person, _ in stuck:
            assert person.status_in(lost_closed) == "left" and "has ended" in person.wait_for_message().text
        assert all(j.state == JobState.DONE for j in rig.jobs_of(lifecycle.EXPIRE_JOB))
    finally:
        rig.close()


@pytest.mark.slow  # waits out real retry_after pauses
def test_429s_are_waited_out_and_a_removal_that_outlasts_the_retries_runs_again(rig):
    channel_id, _, closed = rig.channel()
    person, _ = rig.member(channel_id, closed, "Patient", expires_in=MINUTE)
    rig.telegram.fail_next("banChatMember", 429, "Too Many Requests: retry after 1", retry_after=1)
    # Four 429s on the message: the first try and the rate limiter's three retries.
    rig.telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, count=4)

    rig.clock.advance(2 * MINUTE)
    rig.sweep_and_work()
    assert person.status_in(closed) == "left"
    job = rig.jobs_of(lifecycle.EXPIRE_JOB)[0]
    assert job.state == JobState.QUEUED and "RetryAfter" in job.last_error  # not dropped

    rig.clock.advance(MINUTE)
    rig.work()
    assert rig.jobs_of(lifecycle.EXPIRE_JOB)[0].state == JobState.DONE
    assert len([m for m in person.messages() if "has ended" in m.text]) == 1


def test_the_grace_period_delays_removal(session_factory):
    rig = Rig(session_factory, grace=HOUR)
    try:
        channel_id, _, closed = rig.channel()
        person, subscription_id = rig.member(channel_id, closed, "Graced", expires_in=MINUTE)
        rig.clock.advance(30 * MINUTE)
        assert rig.sweep_and_work().expired == 0 and person.status_in(closed) == "member"
        rig.clock.advance(31 * MINUTE)
        assert rig.sweep_and_work().expired == 1 and person.status_in(closed) == "left"
    finally:
        rig.close()


def test_reminders_go_out_once_per_offset_and_a_renewal_gets_fresh_ones(rig):
    channel_id, _, closed = rig.channel()
    person, subscription_id = rig.member(channel_id, closed, "Reminded", expires_in=5 * DAY)
    fresh, _ = rig.member(channel_id, closed, "New buyer", expires_in=DAY - HOUR, started_ago=timedelta(0))

    rig.sweep_and_work()
    assert person.messages() == []

    rig.clock.advance(2 * DAY + HOUR)  # 3 days less an hour left
    rig.sweep_and_work()
    rig.sweep_and_work()  # a second run (or a restart) sends nothing more
    first = person.wait_for_message()
    assert "ends in 3 days" in first.text and first.buttons[0]["callback_data"].startswith("buy:")
    assert [m.text for m in person.messages()] == [first.text]

    rig.clock.advance(2 * DAY)  # 23 hours left
    rig.sweep_and_work()
    assert "ends in 23 hours" in person.wait_for_message().text
    assert len(person.messages()) == 2

    rig.renew(subscription_id, days=30)  # new expiry: 30 days and 23 hours from now
    rig.clock.advance(27 * DAY + 22 * HOUR)  # 3 days and an hour left: not yet
    rig.sweep_and_work()
    assert len(person.messages()) == 2
    rig.clock.advance(2 * HOUR)
    rig.sweep_and_work()
    assert "ends in 3 days" in person.wait_for_message().text
    assert len(person.messages()) == 3

    # A plan shorter than an offset gets no reminder for that offset the moment it is bought.
    assert fresh.messages() == [] or all("has ended" in m.text for m in fresh.messages())


def test_a_reminder_for_a_term_already_renewed_or_ended_is_dropped(rig):
    channel_id, _, closed = rig.channel()
    person, subscription_id = rig.member(channel_id, closed, "Renewer", expires_in=2 * DAY)
    rig.sweep.run_once()  # the 3-day reminder is queued...
    rig.renew(subscription_id, days=30)  # ...and the buyer renews before it is sent
    rig.work()
    assert person.messages() == []
    assert rig.jobs_of(lifecycle.REMIND_JOB)[0].state == JobState.DONE


def test_only_one_sweep_runs_at_a_time(rig, engine):
    channel_id, _, closed = rig.channel()
    for n in range(6):
        rig.member(channel_id, closed, f"Due {n}", expires_in=MINUTE)
    rig.clock.advance(2 * MINUTE)

    with engine.connect() as other_process:
        other_process.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        blocked = rig.sweep.run_once()
        other_process.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
        other_process.commit()
    assert blocked.skipped and blocked.expired == 0

    results = []
    threads = [threading.Thread(target=lambda: results.append(rig.sweep.run_once())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.expired for r in results) == 6 and sum(r.removals_queued for r in results) == 6
    assert len(rig.jobs_of(lifecycle.EXPIRE_JOB)) == 6


def test_sweeps_at_the_telegram_rate_limit_lose_nothing(session_factory):
    rig = Rig(session_factory, rate_limits=RateLimits(global_per_second=30, global_burst=5))
    try:
        channel_id, _, closed = rig.channel()
        people = [rig.member(channel_id, closed, f"Many {n}", expires_in=MINUTE)[0] for n in range(20)]
        rig.clock.advance(2 * MINUTE)
        rig.sweep_and_work(timeout=60)
        for person in people:
            assert person.status_in(closed) == "left"
            assert len([m for m in person.messages() if "has ended" in m.text]) == 1
        assert all(j.state == JobState.DONE for j in rig.jobs_of(lifecycle.EXPIRE_JOB))
    finally:
        rig.close()


@pytest.mark.parametrize(("left", "said"), [
    (3 * DAY - timedelta(seconds=15), "3 days"),
    (DAY - timedelta(seconds=15), "1 day"),  # the one-day reminder, a sweep after its mark
    (DAY - timedelta(minutes=29), "1 day"),
    (DAY - timedelta(minutes=31), "23 hours"),
    (HOUR + timedelta(minutes=20), "1 hour"),
    (HOUR - timedelta(seconds=1), "59 minutes"),
    (timedelta(seconds=5), "1 minute"),
])
def test_time_left_reads_as_a_person_would_say_it(left, said):
    assert lifecycle.texts.time_left(left) == said
