"""Every kind of job TelePay runs, collected from the capability that declares it.

Adding a kind: declare a `JobKind` next to its handler and add that module's `JOB_KINDS` here.
The queue reads retry policies and retention from this registry; the worker its handlers.
"""

from __future__ import annotations

from telepay.services import access, lifecycle, messages, notifications, posts
from telepay.services.jobs import JobRegistry
from telepay.services.payments import processor
from telepay.services.payouts import engine as payouts
from telepay.services.stars import refunds as stars_refunds

JOB_KINDS = JobRegistry([
    *messages.JOB_KINDS,
    *notifications.JOB_KINDS,
    *processor.JOB_KINDS,
    *access.JOB_KINDS,
    *posts.JOB_KINDS,
    *lifecycle.JOB_KINDS,
    *payouts.JOB_KINDS,
    *stars_refunds.JOB_KINDS,
])
