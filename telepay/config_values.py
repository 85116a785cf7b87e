"""The checks behind the settings' validators, each raising ValueError that says what is wrong.

Kept apart from `telepay.config` so the settings model reads as a list of settings. A message
never contains a secret's value.
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from typing import Iterable
from urllib.parse import urlsplit

from pydantic import SecretStr

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_INSTANCE = re.compile(r"^[a-z0-9][a-z0-9:._-]*:[a-z0-9-]+:[a-z0-9][a-z0-9-]*$")

# How alike a name must be to one of ours to be reported (difflib's ratio). DATABSE_URL against
# DATABASE_URL is 0.96, LOG_LVL against LOG_LEVEL 0.875; a machine's usual variables stay below
# 0.8 (DATABASE against DATABASE_URL is 0.8, HTTP_PROXY and PGPASSWORD much less).
LOOKALIKE_CUTOFF = 0.85


def split(value: str) -> tuple[str, ...]:
    """`"a, b,,c"` -> `("a", "b", "c")`."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def duration(value: str) -> timedelta:
    """`3d`, `12h`, `30m`, `45s` -> a timedelta."""
    match = _DURATION.match(value.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{value!r} is not a duration like 3d, 12h, 30m or 45s")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def networks(values: tuple[str, ...]) -> tuple[str, ...]:
    """Each entry must be an address or a CIDR network without host bits (`10.0.0.1/8` is refused)."""
    from telepay.security.client_ip import parse_networks

    for entry in values:
        parse_networks(entry)  # raises ValueError naming the entry
    return values


def url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ValueError(f"{value!r} is not a {' or '.join(schemes)} URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
    except ValueError:
        raise ValueError(f"{value!r} has a bad port") from None
    return value


def postgres_url(value: SecretStr) -> SecretStr:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(value.get_secret_value())
    except (ArgumentError, ValueError):
        raise ValueError("not a URL (expected postgresql://user:password@host:port/database)") from None
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"a {parsed.get_backend_name()!r} URL, not a PostgreSQL one")
    return value


def cloud_sql_instance(value: str) -> str:
    if not _INSTANCE.match(value):
        raise ValueError(f"{value!r} is not an instance connection name like project:region:instance")
    return value


def private_key(value: SecretStr) -> SecretStr:
    if not _HEX_KEY.match(value.get_secret_value()):
        raise ValueError("not 32 bytes of hex (64 hex digits, optionally after 0x)")
    return value


def eth_address(value: str) -> str:
    from eth_utils import is_checksum_address

    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not 0x followed by 40 hex digits")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError(f"{value!r} has mixed case but its checksum is wrong (a typo?)")
    return value


def lookalikes(env_keys: Iterable[str], file_keys: Iterable[str], known: list[str], file_name: str) -> list[str]:
    """A warning for each name that is not a setting but is close to one."""
    warnings = []
    known_set = set(known)
    for keys, where in ((env_keys, "the environment"), (file_keys, file_name)):
        for key in keys:
            if key in known_set:
                continue
            close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=LOOKALIKE_CUTOFF)
            if close:
                warnings.append(f"{key} (in {where}) is not a TelePay setting and is ignored; "
                                f"did you mean {close[0]}?")
    return warnings
