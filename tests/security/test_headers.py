"""The security header set."""

import pytest
from werkzeug.datastructures import Headers

from telepay.security.headers import SECURITY_HEADERS


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
