"""The Bot API reference (telegram-bot-api.json) as an oracle for JSON the sandbox returns.

`Reference.problems(value, types)` lists every way `value` fails to be one of `types`, written
as the reference writes them ("Integer", "Array of Update", "Message", ...): missing required
fields, fields the type does not have, wrong JSON types, recursively. Unions (ChatMember,
MessageOrigin, MaybeInaccessibleMessage, ...) match if any subtype matches; a subtype's
discriminator ("always “creator”" in the field's description) must hold.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

_ALWAYS = re.compile(r"""always [“"]([^”"]+)[”"]""")
_SCALARS = {
    "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "True": lambda v: v is True,
}


def reference_path() -> Path:
    """`TELEGRAM_BOT_API_REFERENCE`, else the copy kept in the repository (tests/data)."""
    configured = os.environ.get("TELEGRAM_BOT_API_REFERENCE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "data" / "telegram-bot-api.json"


class Reference:
    def __init__(self, data: dict) -> None:
        self.version = data["version"]
        self.methods: dict[str, dict] = data["methods"]
        self.types: dict[str, dict] = data["types"]

    @classmethod
    def load(cls, path: Path | None = None) -> Reference:
        return cls(json.loads((path or reference_path()).read_text()))

    def method_fields(self, method: str) -> dict[str, dict]:
        return {field["name"]: field for field in self.methods[method].get("fields", [])}

    def problems(self, value, types: list[str], path: str = "$") -> list[str]:
        best: list[str] | None = None
        for type_name in types:
            found = self._problems_one(value, type_name, path)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        return best or [f"{path}: no type given"]

    def _problems_one(self, value, type_name: str, path: str) -> list[str]:
        if type_name.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: expected {type_name}, got {type(value).__name__}"]
            inner = type_name[len("Array of "):]
            return [p for i, item in enumerate(value) for p in self.problems(item, [inner], f"{path}[{i}]")]
        if type_name in _SCALARS:
            return [] if _SCALARS[type_name](value) else [f"{path}: expected {type_name}, got {value!r}"]
        spec = self.types.get(type_name)
        if spec is None:
            return [f"{path}: unknown reference type {type_name}"]
        if "subtypes" in spec:
            return self.problems(value, spec["subtypes"], path)
        if not isinstance(value, dict):
            return [f"{path}: expected {type_name} object, got {value!r}"]
        fields = {field["name"]: field for field in spec.get("fields", [])}
        found = [f"{path}.{name}: not a field of {type_name}" for name in value if name not in fields]
        for name, field in fields.items():
            if name not in value:
                if field["required"]:
                    found.append(f"{path}.{name}: required by {type_name} but missing")
                continue
            found += self.problems(value[name], field["types"], f"{path}.{name}")
            always = _ALWAYS.search(field.get("description", ""))
            if always and field["types"] == ["String"] and value[name] != always.group(1):
                found.append(f"{path}.{name}: {type_name} has {name} always {always.group(1)!r}")
        return found
