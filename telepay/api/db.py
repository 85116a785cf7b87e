"""The request's unit of work: one transaction for everything a webhook records.

An accepted internal signature is recorded in the same transaction as the facts it carried,
so a request refused later changes nothing, and two copies of one signed request race on a
primary key: exactly one commits, the other is refused as a replay.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from flask import g
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from telepay.api.state import api_state, services
from telepay.errors import TelePayError
from telepay.models import AcceptedSignature

# Signatures older than the window are refused as stale anyway; keep a margin, then forget.
KEEP_SIGNATURES = timedelta(seconds=2 * 300)
PRUNE_EVERY = 100


class Replayed(TelePayError):
    code = "signature_replayed"
    status = 401


@contextmanager
def transaction() -> Iterator[Session]:
    svc = services()
    now = svc.clock.now()
    with svc.session_factory.begin() as session:
        key = g.get("replay_key")
        if key is not None:
            recorded = session.execute(
                insert(AcceptedSignature)
                .values(signature=key, accepted_at=now)
                .on_conflict_do_nothing()
                .returning(AcceptedSignature.signature)
            ).scalar_one_or_none()
            if recorded is None:
                raise Replayed("This signed request was already accepted once.")
            state = api_state()
            state.signatures_seen += 1
            if state.signatures_seen % PRUNE_EVERY == 0:
                session.execute(delete(AcceptedSignature).where(AcceptedSignature.accepted_at < now - KEEP_SIGNATURES))
        yield session
    svc.wake_worker()
