"""Start-up waits for the database instead of failing at the first refusal.

A database that boots slower than the VM, or restarts during a deploy, is normal; exiting at
once would burn through systemd's start limit and leave the service failed until someone runs
`systemctl reset-failed`. The wait is bounded (DB_STARTUP_WAIT_SECONDS), so a database that
is really gone still ends in a clear failure, and the unit's limits are sized to fit it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database did not answer within the start-up wait."""


def wait_for_database(engine: Engine, wait_seconds: float, *, sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> int:
    """Return once the database answers a round trip; the number of attempts it took.

    Backoff 1, 2, 4 ... 15 s between attempts; DatabaseUnavailable when `wait_seconds` pass.
    """
    deadline = clock() + wait_seconds
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            if attempt > 1:
                logger.info("database answered after %d attempts", attempt)
            return attempt
        except DBAPIError as error:
            left = deadline - clock()
            if left <= 0:
                raise DatabaseUnavailable(
                    f"the database did not answer within {wait_seconds:g} s "
                    f"({attempt} attempts): {error.orig!r}") from error
            logger.warning("database not reachable yet (attempt %d), retrying for up to %d s more: %s",
                           attempt, int(left), error.orig)
            sleep(min(delay, max(left, 0.1)))
            delay = min(delay * 2, 15.0)
