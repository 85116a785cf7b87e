"""The product and its emulators are separate: production installs carry no dev chain."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~ ]", line, maxsplit=1)[0].lower())
    return names


def test_production_requirements_have_no_dev_chain():
    names = _requirement_names(ROOT / "requirements.txt")
    assert not names & {"eth-tester", "py-evm", "pytest", "hypothesis"}
    assert {"eth-tester", "py-evm"} <= _requirement_names(ROOT / "requirements-sandbox.txt")


def test_the_product_never_imports_the_sandbox():
    offenders = []
    for path in (ROOT / "telepay").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if name.split(".")[0] == "telepay_sandbox"]
    assert offenders == []


def test_the_product_distribution_does_not_package_the_sandbox():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["telepay", "telepay.*"]
    assert "telepay.commands" not in project["project"].get("entry-points", {})
    sandbox = tomllib.loads((ROOT / "telepay_sandbox" / "pyproject.toml").read_text())
    assert "demo" in sandbox["project"]["entry-points"]["telepay.commands"]
