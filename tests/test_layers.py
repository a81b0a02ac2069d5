"""The layering rules of docs/ARCHITECTURE.md, checked on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "linesync"

# package -> linesync packages it must not import
FORBIDDEN = {
    "core": {"protocol", "server", "client", "cli"},
    "protocol": {"server", "client", "cli"},
    "server": {"client", "cli"},
    "client": {"server", "cli"},
}
# third-party modules that do I/O, which the pure core must not import
CORE_FORBIDDEN_EXTERNAL = {"aiohttp", "starlette", "uvicorn", "sqlite3", "asyncio", "os", "socket"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package: str) -> None:
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "linesync" and len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
            if package == "core" and parts[0] in CORE_FORBIDDEN_EXTERNAL:
                bad.append(f"{path.relative_to(SRC)} imports {name} (core does no I/O)")
    assert not bad, "\n".join(bad)


def test_the_server_modules_import_no_circle() -> None:
    """Handlers and the collector get their context from ``server.context``,
    which needs neither; ``app`` wires them up. Imports made for type checking
    only count too: a circle there is a circle in the design."""
    modules = {
        "linesync.server."
        + p.relative_to(SRC / "server").with_suffix("").as_posix().replace("/", "."): p
        for p in (SRC / "server").rglob("*.py")
        if p.name != "__init__.py"
    }

    def imported(path: Path) -> set[str]:  # ``from pkg import mod`` names pkg.mod too
        tree = ast.parse(path.read_text(), filename=str(path))
        out = _imports(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.update(f"{node.module}.{alias.name}" for alias in node.names)
        return out

    graph = {m: {n for n in imported(p) if n in modules and n != m} for m, p in modules.items()}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(m) :], m]))
        if m in done:
            return
        for n in sorted(graph[m]):
            visit(n, [*path, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])
