"""The import contract of the package, checked on the source (every import, function-level ones too).

Rooms and the rooms each may import (besides its own modules and the base modules ``doctorsun``,
``doctorsun.errors`` and ``doctorsun.files``, which import nothing else):

- ``model``: nothing else. It defines what a checkpoint is.
- ``data``: ``model.chat`` only (the chat format that tokenisation renders).
- ``mini`` (the SunMed-VL-mini builder): ``data`` and ``model.chat``.
- ``train``, ``eval``, ``serve``: ``model`` and ``data``.
- ``quickstart``: ``mini``, ``train``, ``eval``, ``model``, ``data``.
- ``cli``: anything (it is the one entry point; nothing but it imports ``serve``).

And no cycle between modules. ``python tests/import_contract.py [SRC]`` prints the violations.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "doctorsun"
BASE = {"", "errors", "files"}
"""The package's root module and the modules every room may use (they import no room)."""
ALLOWED: dict[str, set[str]] = {
    "model": {"model"},
    "data": {"data", "model.chat"},
    "mini": {"mini", "data", "model.chat"},
    "train": {"train", "model", "data"},
    "eval": {"eval", "model", "data"},
    "serve": {"serve", "model", "data"},
    "quickstart": {"quickstart", "mini", "train", "eval", "model", "data"},
    "__main__": {"cli"},
}
"""Room -> what it may import: a room (``model``) or one module of a room (``model.chat``)."""
ANYTHING = {"cli"}


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``src``."""
    found = {}
    for f in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = f
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` for each import of the package in a module, wherever it sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:  # `from doctorsun.data import prompts` imports a module
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in known else base


def room(module: str) -> str:
    """``doctorsun.model.chat`` -> ``model``; base modules -> their name (``errors``) or ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(source: str, target: str) -> bool:
    src_room, dst_room = room(source), room(target)
    if dst_room in BASE or src_room in ANYTHING or src_room == dst_room:
        return True
    if src_room in BASE:  # the base imports nothing but the base
        return False
    rules = ALLOWED.get(src_room, set())
    inner = ".".join(target.split(".")[1:])
    return any(inner == rule or inner.startswith(rule + ".") for rule in rules)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(src: str | Path) -> list[str]:
    """Every broken rule of the contract in the package under ``src``, one line each."""
    src = Path(src)
    known = modules(src)
    graph: dict[str, set[str]] = {name: set() for name in known}
    problems = []
    for name, path in known.items():
        for line, target in sorted(set(imports(name, path, known))):
            if target not in known:
                problems.append(f"{path.relative_to(src)}:{line}: {name} imports {target}, which does not "
                                f"exist")
                continue
            graph[name].add(target)
            if not allowed(name, target):
                problems.append(f"{path.relative_to(src)}:{line}: wrong-way import {name} -> {target}")
    for component in cycles(graph):
        problems.append("import cycle: " + " <-> ".join(component))
    return problems


if __name__ == "__main__":
    found = violations(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src")
    print("\n".join(found) or "import contract holds")
    raise SystemExit(1 if found else 0)
