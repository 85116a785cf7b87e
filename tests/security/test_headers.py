"""The security header set."""

import pytest
from werkzeug.datastructures import Headers

from telepay.security.headers import SECURITY_HEADERS, SecurityHeaders


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
        ("Cache-Control", "no-store"),
    ],
)
def test_header_values(name, value):
    assert SECURITY_HEADERS[name] == value


def test_hsts_is_long_lived():
    value = SECURITY_HEADERS["Strict-Transport-Security"]
    max_age = int(value.split(";")[0].removeprefix("max-age="))
    assert max_age >= 31_536_000


def test_read_only():
    with pytest.raises(TypeError):
        SECURITY_HEADERS["X-Frame-Options"] = "SAMEORIGIN"  # type: ignore[index]


def test_values_are_valid_header_text_and_apply_to_a_response():
    headers = Headers()
    headers.update(SECURITY_HEADERS)
    assert len(headers) == 6
    for name, value in SECURITY_HEADERS.items():
        assert value.isascii() and "\n" not in value and "\r" not in value
        assert headers[name] == value


def test_the_middleware_sets_every_header_once_and_overrides_the_apps_own():
    seen = {}

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("cache-control", "max-age=60")])
        return [b"{}"]

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    assert SecurityHeaders(app)({}, start_response) == [b"{}"]
    names = [name.lower() for name, _ in seen["headers"]]
    assert sorted(names) == sorted(["content-type"] + [name.lower() for name in SECURITY_HEADERS])
    assert dict(seen["headers"])["Cache-Control"] == "no-store"
