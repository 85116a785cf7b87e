"""Flask app factory: blueprints registered here; services, guards and the IPN recorder kept as
the app's TelePay extension (`telepay.api.state`). Domain errors become answers here, in one
place: a view raises, this maps."""

from __future__ import annotations

import logging
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from telepay.api.health import health
from telepay.api.nowpayments import ipn_recorder, nowpayments
from telepay.api.state import EXTENSION, ApiState
from telepay.api.webhooks import webhooks
from telepay.errors import CooldownActive, TelePayError
from telepay.security.guards import Guards
from telepay.config import Settings
from telepay.security.headers import SecurityHeaders
from telepay.wiring import Services

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def create_app(settings: Settings, services: Services, test_config: dict[str, object] | None = None) -> Flask:
    app = Flask("telepay")
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY)
    guards = Guards.from_settings(settings, now=lambda: services.clock.now().timestamp(),
                                  on_ipn_refused=services.ipn_refusals.refused)
    ApiState(settings, services, guards, ipn_recorder(services)).init_app(app)
    if test_config:
        app.config.update(test_config)
    app.register_blueprint(health)
    app.register_blueprint(webhooks)
    app.register_blueprint(nowpayments)

    @app.errorhandler(TelePayError)
    def domain_error(failure: TelePayError) -> Response:
        response = jsonify(error=failure.code, message=failure.message)
        response.status_code = failure.status
        if isinstance(failure, CooldownActive):
            response.headers["Retry-After"] = str(failure.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(failure: HTTPException) -> Response:
        code = (failure.name or "error").lower().replace(" ", "_")
        response = jsonify(error=code, message=failure.description)
        response.status_code = failure.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(failure: Exception) -> Response:
        logger.error("unhandled error in the API", exc_info=failure)
        response = jsonify(error="internal_error", message="Something went wrong on our side; try again.")
        response.status_code = 500
        return response

    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
    return app


def close_app(app: Flask) -> None:
    """The extension's teardown when the server stops: the IPN recorder's kept connections.

    A plain Flask app (the benchmark's bare baseline) has no TelePay state to close."""
    state: ApiState | None = app.extensions.get(EXTENSION)
    if state is not None:
        state.close()
