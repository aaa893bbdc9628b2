"""The import rule and module sizes of docs/ARCHITECTURE.md, checked by parsing every import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.unit

MAX_GATEWAY_MODULE_LINES = 300

# package -> packages it must never import (prefix match on dotted names)
FORBIDDEN = {
    "gateway.fanout": ("gateway.access", "gateway.tails", "gateway.http", "gateway.app", "bridge"),
    "gateway.access": ("gateway.fanout", "gateway.tails", "gateway.http", "gateway.app", "bridge"),
    "gateway.tails": ("gateway.fanout", "gateway.access", "gateway.http", "gateway.app", "bridge"),
    "gateway.http": ("gateway.app", "bridge"),
    "gateway": ("bridge",),
    "bridge": ("gateway",),
    "wire": ("gateway", "bridge", "settings", "embedded"),
    "settings": ("gateway", "bridge", "wire", "embedded"),
    # the command is a client of the contract, like the console: wire/ for names and codes only
    "tailgate": ("gateway", "bridge", "settings", "embedded", "salt_states"),
}


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def owner(module: str) -> str:
    """The most specific package of FORBIDDEN that holds `module`."""
    return max((p for p in FORBIDDEN if under(module, p)), key=len)


@pytest.mark.parametrize("package", ["gateway", "bridge", "wire", "settings", "tailgate"])
def test_imports_follow_the_rule(package: str) -> None:
    broken = []
    for module, path in modules(package):
        banned = FORBIDDEN[owner(module)]
        for name in sorted(imports_of(path)):
            if any(under(name, b) for b in banned):
                broken.append(f"{module} imports {name}")
    assert not broken, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(broken)


def test_only_the_app_knows_every_gateway_package() -> None:
    """Nothing but http/, app and __main__ imports gateway.http."""
    for module, path in modules("gateway"):
        if under(module, "gateway.http") or module in ("gateway.app", "gateway.__main__"):
            continue
        assert not any(under(n, "gateway.http") for n in imports_of(path)), f"{module} imports gateway.http"


def test_no_gateway_module_is_over_the_size_limit() -> None:
    sizes = {m: len(path.read_text().splitlines()) for pkg in ("gateway", "tailgate") for m, path in modules(pkg)}
    over = {m: n for m, n in sizes.items() if n > MAX_GATEWAY_MODULE_LINES}
    assert not over, f"gateway modules over {MAX_GATEWAY_MODULE_LINES} lines: {over}"


def test_every_module_and_package_says_what_it_holds() -> None:
    missing = [
        module
        for package in ("gateway", "bridge", "wire", "settings", "tailgate")
        for module, path in modules(package)
        if ast.get_docstring(ast.parse(path.read_text())) is None and path.stat().st_size > 0
    ]
    assert not missing, f"modules without a docstring: {missing}"


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a fanout module importing access is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from gateway.access.guard import Guard\nimport gateway.http.api\n")
    found = imports_of(bad)
    assert any(under(n, "gateway.access") for n in found)
    assert any(under(n, "gateway.http") for n in found)
    assert owner("gateway.fanout.hub") == "gateway.fanout"
