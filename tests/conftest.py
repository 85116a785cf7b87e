"""Shared fixtures: a real PostgreSQL for every test that needs one.

`TELEPAY_TEST_DATABASE_URL` names a server to use; without it (a fresh clone, `make test`) an
embedded server from pgserver is started for the run and stopped after it. Either way the run
gets its own fresh database, migrated to head, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings as hypothesis_settings
from sqlalchemy import create_engine

from telepay.models.engine import make_session_factory
from telepay_sandbox.database import empty_tables, scratch_database

pytest_plugins = ["tests.log_guard", "pytester"]  # the bot token in no log of the run (tests/log_guard.py)


# How hard property tests look is set here, by profile, never in the tests: `ci` (the CI
# variable is set) tries many examples, derandomized so a landing never hinges on a lucky draw;
# `dev` (the inner loop) tries a few, at random, and keeps exploring from run to run.
# HYPOTHESIS_PROFILE picks one by name. Two shared cores: an example can be slow for reasons
# that are not its own, so there are no deadlines; the examples' count and content are what we test.
hypothesis_settings.register_profile("ci", max_examples=1000, deadline=None, derandomize=True,
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("dev", max_examples=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/e2e runs `telepay run` or the demo: marked `e2e`."""
    for item in items:
        if E2E in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def database_url() -> str:
    with scratch_database("telepay_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url):
    engine = create_engine(database_url, pool_size=10, max_overflow=20)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    yield make_session_factory(engine)
    empty_tables(engine)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
