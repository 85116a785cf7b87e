"""The running version: the installed distribution's, so `telepay --version`, the start-up
line and `/status` all say the same thing."""

from __future__ import annotations

from functools import cache
from importlib import metadata


@cache
def version() -> str:
    try:
        return metadata.version("telepay")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
