"""The package's layers, read from its import graph (stdlib `ast`, no import
of the package itself): pure cores import nothing of ours outside
`protocol`; storage does not reach up into the server or across into the
client; the client knows no server or storage (the server may use the client to
reach its peers); and no two modules import
each other, directly or around a longer circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asgi_xfer"

# Layer -> the layers of ours it may import (besides itself). Top-level
# modules (the public face and the CLI) may import anything.
ALLOWED = {
    "protocol": set(),
    "storage": {"protocol"},
    # The server may use our HTTP client to talk to its peers (cluster).
    "server": {"protocol", "storage", "client"},
    "client": {"protocol"},
}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """Every module of ours that `source` (the module `name`) imports, also
    inside functions; `from pkg import mod` counts as importing `pkg.mod`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "asgi_xfer")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "asgi_xfer":
                continue
            yield target
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    yield f"{target}.{alias.name}"


def import_graph(package: Path) -> dict[str, set[str]]:
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set(imported_modules(path.read_text(), name, path.name == "__init__.py", known))
        graph[name] = {d for d in deps if d in known and d != name}
    return graph


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, deps in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            continue
        for dep in sorted(deps):
            other = layer_of(dep)
            if other != layer and other not in ALLOWED[layer]:
                found.append(f"{module} imports {dep} ({layer} may import {sorted(ALLOWED[layer]) or 'nothing of ours'})")
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _is_package_init_edge(module: str, dep: str) -> bool:
    # A package's __init__ re-exporting its own modules is not a circle.
    return dep.startswith(module + ".")


def test_every_layer_imports_only_what_it_may() -> None:
    assert layer_violations(import_graph(PACKAGE)) == []


def test_no_import_circles() -> None:
    graph = {m: {d for d in deps if not _is_package_init_edge(m, d)} for m, deps in import_graph(PACKAGE).items()}
    assert import_cycles(graph) == []


def test_every_module_says_what_it_owns() -> None:
    missing = [module_name(p, PACKAGE) for p in PACKAGE.rglob("*.py")
               if p.name != "__main__.py" and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("protocol/ranges.py", "from ..storage import disktree"),
    ("protocol/tus.py", "from asgi_xfer.server.config import Settings"),
    ("storage/committer.py", "from ..server.context import Context"),
    ("client/download.py", "from ..storage.staging import StagedFile"),
    ("client/models.py", "from ..server import exchange"),
])
def test_a_forbidden_import_is_caught(tmp_path: Path, layer: str, forbidden: str) -> None:
    """The check itself can fail: a copy of the package with one forbidden
    import added is refused."""
    copy = tmp_path / "asgi_xfer"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    victim = copy / layer
    victim.write_text(victim.read_text() + f"\n{forbidden}\n")
    assert layer_violations(import_graph(copy))


def test_a_circle_is_caught(tmp_path: Path) -> None:
    graph = import_graph(PACKAGE)
    graph["asgi_xfer.storage.hashfeed"].add("asgi_xfer.storage.sessionhash")
    assert ["asgi_xfer.storage.hashfeed", "asgi_xfer.storage.sessionhash"] in import_cycles(graph)
