"""Reading the settings in, and showing them back to a person without their secrets.

`load_settings` is the one reader: it overlays `.env` with the environment, resolves values
shaped like a Secret Manager version path (`projects/<p>/secrets/<name>/versions/<v>`), then
validates through `telepay.config.Settings`. A refusal is rendered one line per bad setting
(its name, what it got unless secret, what it allows), which `telepay` prints before exit 2.
Kept apart from `telepay.config` so that module is the list of settings and what each allows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Mapping, Protocol

from pydantic import SecretStr, ValidationError

from telepay import config_values as check
from telepay.config import ENV_NAMES, FIELDS, SECRET_NAMES, ConfigError, Settings

SECRET_PATH = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$")


class SecretClient(Protocol):
    def access(self, path: str) -> str: ...


class GoogleSecretClient:
    """Secret Manager access, created only when a setting actually names a secret path."""

    def __init__(self) -> None:
        from google.cloud import secretmanager

        self._client = secretmanager.SecretManagerServiceClient()

    def access(self, path: str) -> str:
        response = self._client.access_secret_version(name=path)
        return response.payload.data.decode("utf-8")


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=VALUE pairs of a .env file (python-dotenv: comments, quotes, `export `).

    Values are taken literally: `$` in a password is not expanded.
    """
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    values = dotenv_values(path, interpolate=False)
    broken = [key for key, value in values.items() if value is None]
    if broken:
        raise ConfigError(f"{path}: expected KEY=VALUE, got a bare {broken[0]!r}", [])
    return {key: value for key, value in values.items() if value is not None}


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    secret_client_factory: Callable[[], SecretClient] = GoogleSecretClient,
) -> Settings:
    """Build Settings from `.env` overlaid by the environment (the environment wins)."""
    raw: dict[str, str] = read_env_file(env_file) if env_file else {}
    raw.update(os.environ if environ is None else environ)
    # An empty value means "not set": the default applies, as it always has in .env.example.
    raw = {k: v.strip() for k, v in raw.items() if k in ENV_NAMES and v.strip()}

    client: SecretClient | None = None
    for name, value in raw.items():
        if SECRET_PATH.match(value):
            client = client or secret_client_factory()
            raw[name] = client.access(value).strip()
    try:
        return Settings(**raw)  # type: ignore[arg-type]  # text values, parsed and checked by the model
    except ValidationError as error:
        raise _explained(error, raw) from None


def _explained(error: ValidationError, raw: Mapping[str, str]) -> ConfigError:
    """One line per bad setting: its name, what it got (unless secret), what it allows."""
    lines, names = [], []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "settings"
        if name in names:
            continue
        names.append(name)
        shown = "(hidden)" if name in SECRET_NAMES else repr(raw.get(name, ""))
        reason = problem["msg"].removeprefix("Value error, ")
        allowed = FIELDS[name].description if name in FIELDS else ""
        lines.append(f"  {name}={shown}: {reason}. Allowed: {allowed}.")
    return ConfigError("Bad settings:\n" + "\n".join(lines), names)


def lookalike_names(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> list[str]:
    """Warnings for names that are not settings but look like one (`DATABSE_URL`)."""
    file_keys = list(read_env_file(env_file)) if env_file else []
    env_keys = list(os.environ if environ is None else environ)
    return check.lookalikes(env_keys, file_keys, list(ENV_NAMES), str(env_file) if env_file else ".env")


def masked(settings: Settings) -> dict[str, str]:
    """Every setting by its environment name, secrets shown only as set / not set: the only view
    of the settings meant for humans."""
    view = {}
    for env_name, attr in ENV_NAMES.items():
        value = getattr(settings, attr)
        if isinstance(value, SecretStr) or env_name in SECRET_NAMES:
            view[env_name] = "****** (set)" if value else "(not set)"
        elif isinstance(value, tuple):
            view[env_name] = ",".join(str(v) for v in value)
        else:
            view[env_name] = "" if value is None else str(value)
    return view
