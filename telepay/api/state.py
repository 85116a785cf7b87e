"""The API's share of the process, kept as a Flask extension: `app.extensions["telepay"]`.

Views, guards and the unit of work read it through `api_state()` (typed), never through
`app.config`. `close` is its teardown when the server stops: the IPN recorder's kept
connections go back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from sqlalchemy.engine import Connection

from telepay.api.groupcommit import GroupCommit
from telepay.config import Settings
from telepay.security.guards import Guards
from telepay.services.ipn import IpnDelivery
from telepay.wiring import Services

EXTENSION = "telepay"


@dataclass
class ApiState:
    settings: Settings
    services: Services
    guards: Guards
    ipn_recorder: GroupCommit[IpnDelivery, Any, Connection]
    # Accepted signatures recorded so far: every hundredth prunes the old ones.
    signatures_seen: int = 0

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self

    def close(self) -> None:
        self.ipn_recorder.close_idle()


def api_state(app: Flask | None = None) -> ApiState:
    """The app's TelePay state (the current app's, inside a request)."""
    state: ApiState = (app or current_app).extensions[EXTENSION]
    return state


def services() -> Services:
    return api_state().services
