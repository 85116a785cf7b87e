"""Flask app factory: blueprints registered here, services read from `app.config` per request."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from telepay.api.health import health


def create_app(settings: Any, services: Any, test_config: dict | None = None) -> Flask:
    app = Flask("telepay")
    app.config.update(
        TELEPAY_SETTINGS=settings,
        TELEPAY_SERVICES=services,
        MAX_CONTENT_LENGTH=64 * 1024,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.register_blueprint(health)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return jsonify(error=code, message=error.description), error.code

    return app
