"""Flask app factory: blueprints registered here, services read from `app.config` per request."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from telepay.api.health import health
from telepay.api.nowpayments import ipn_recorder, nowpayments
from telepay.api.webhooks import webhooks
from telepay.errors import CooldownActive, TelePayError
from telepay.security.guards import Guards
from telepay.security.headers import SecurityHeaders

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def create_app(settings: Any, services: Any, test_config: dict | None = None) -> Flask:
    app = Flask("telepay")
    app.config.update(
        TELEPAY_SETTINGS=settings,
        TELEPAY_SERVICES=services,
        TELEPAY_GUARDS=Guards.from_settings(settings, now=lambda: services.clock.now().timestamp()),
        TELEPAY_IPN_RECORDER=ipn_recorder(services),
        MAX_CONTENT_LENGTH=MAX_BODY,
    )
    if test_config:
        app.config.update(test_config)
    app.register_blueprint(health)
    app.register_blueprint(webhooks)
    app.register_blueprint(nowpayments)

    @app.errorhandler(TelePayError)
    def domain_error(failure: TelePayError):
        response = jsonify(error=failure.code, message=failure.message)
        response.status_code = failure.status
        if isinstance(failure, CooldownActive):
            response.headers["Retry-After"] = str(failure.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(failure: HTTPException):
        code = (failure.name or "error").lower().replace(" ", "_")
        response = jsonify(error=code, message=failure.description)
        response.status_code = failure.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(failure: Exception):
        logger.error("unhandled error in the API", exc_info=failure)
        response = jsonify(error="internal_error", message="Something went wrong on our side; try again.")
        response.status_code = 500
        return response

    app.wsgi_app = SecurityHeaders(app.wsgi_app)
    return app


def close_app(app: Flask) -> None:
    """Release what the app holds between requests: the IPN recorder's kept connections."""
    recorder = app.config.get("TELEPAY_IPN_RECORDER")
    if recorder is not None:
        recorder.close_idle()
