"""Liveness: `GET /health` answers without touching the database, so a slow database never
gets the process restarted by a health checker."""

from __future__ import annotations

from flask import Blueprint, jsonify

health = Blueprint("health", __name__)


@health.get("/health")
def liveness():
    return jsonify(status="ok")
