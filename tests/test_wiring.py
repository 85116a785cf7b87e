"""The composition: which services may be absent, and the outside clients closed at shutdown."""

from __future__ import annotations

import types
import typing

from telepay.api.state import api_state
from telepay.wiring import Services
from tests.api.conftest import make_app

# Absent only without their own settings (payouts, ChangeNOW), or until `telepay run` starts it
# (the alert monitor).
MAY_BE_ABSENT = {"payouts", "changenow", "alert_monitor"}


def test_only_services_that_need_their_own_settings_may_be_absent():
    optional = {name for name, hint in typing.get_type_hints(Services).items()
                if isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)}
    assert optional == MAY_BE_ABSENT


def test_closing_the_services_closes_the_outside_clients(engine):
    services = api_state(make_app(engine, CHANGENOW_API_KEY="test-changenow-key")).services
    clients = [services.nowpayments, services.changenow]
    assert services.changenow is not None and not any(client._http._client.is_closed for client in clients)
    services.close()
    assert all(client._http._client.is_closed for client in clients)
