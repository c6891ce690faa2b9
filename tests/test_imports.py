"""The package's shape (issue 14), read from the source: every import inside ``eventlog`` points
down the layers, and no two modules import each other, directly or round a circle.

Layers, lowest first: ``core`` (record format, digest chain, validation, errors) < ``backends``
< ``store`` < the public surface (``eventlog/__init__.py``) < the front ends ``cli``, ``server``
and ``integrations`` (``eventlog/__main__.py`` is the CLI's). A module may import its own layer
and those below. Front ends don't import each other, except the pairs in ``FRONT_END_SHARED``;
the public surface re-exports the front-end names in ``PUBLIC_FROM_FRONT_ENDS``.

Imports under ``if TYPE_CHECKING:`` never run, so they are left out of the cycle check (they
must still point down the layers); imports inside functions run late but do run, so they
count. The source is read with ``ast``: nothing is imported, so optional dependencies
(starlette, redis, the agent frameworks) need not be installed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "eventlog"

LAYERS = {"core": 0, "backends": 1, "store": 2, "": 3, "cli": 4, "server": 4, "integrations": 4}
"""A module's layer by its first package under ``eventlog`` ("": the package root)."""

FRONT_END_SHARED = {
    # The export formats (text, Markdown, JSON lines) that ``eventlog export`` writes are the
    # ones the viewer downloads: one implementation, kept with the CLI that came first.
    ("eventlog.server._explore", "eventlog.cli._export"),
}
PUBLIC_FROM_FRONT_ENDS = {
    ("eventlog", "eventlog.integrations._persistence"),  # SessionPersistence is public API
    ("eventlog.__main__", "eventlog.cli._main"),  # python -m eventlog runs the CLI
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, bool]]]:
    """Each module's imports of other ``eventlog`` modules: (module, only when type checking)."""
    edges: dict[str, set[tuple[str, bool]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = _type_checking_nodes(tree)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = edges.setdefault(name, set())
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                origin = ".".join(base + ([node.module] if node.module else []))
                # ``from . import _x`` imports the module _x; ``from .m import name``, m.
                targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules
                           else origin for alias in node.names]
            for target in targets:
                if target.split(".")[0] == "eventlog" and target != name:
                    assert target in modules, f"{name} imports {target}, which is not a module here"
                    found.add((target, id(node) in typing_only))
    return edges


def layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    group = parts[1] if len(parts) > 1 else ""
    if group == "__main__":
        group = "cli"
    elif group not in LAYERS:  # a module at the root (there are none but __init__ today)
        group = ""
    return group, LAYERS[group]


def layer_violations(edges: dict[str, set[tuple[str, bool]]]) -> list[str]:
    bad = []
    for module, targets in sorted(edges.items()):
        group, rank = layer(module)
        for target, _ in sorted(targets):
            target_group, target_rank = layer(target)
            if (module, target) in FRONT_END_SHARED | PUBLIC_FROM_FRONT_ENDS:
                continue
            if target_rank > rank or (target_rank == rank == 4 and target_group != group):
                bad.append(f"{module} ({group or 'public'}) imports {target} "
                           f"({target_group or 'public'})")
    return bad


def cycles(edges: dict[str, set[tuple[str, bool]]]) -> list[list[str]]:
    """The import circles (strongly connected components of more than one module), leaving
    out imports made only for type checking."""
    graph = {m: sorted(t for t, typing_only in ts if not typing_only) for m, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit)
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


@pytest.fixture(scope="module")
def edges() -> dict[str, set[tuple[str, bool]]]:
    return imports(_modules())


def test_no_import_cycles(edges: dict[str, set[tuple[str, bool]]]) -> None:
    assert cycles(edges) == []


def test_imports_point_down_the_layers(edges: dict[str, set[tuple[str, bool]]]) -> None:
    assert layer_violations(edges) == []


def test_the_checks_can_fail() -> None:
    # The same checks on a made-up graph that breaks both rules, so a check that could
    # never fail (a resolver that found no edges, say) does not pass silently.
    made_up = {
        "eventlog.store._log": {("eventlog.store._compaction", False)},
        "eventlog.store._compaction": {("eventlog.store._log", False)},
        "eventlog.store._typed": {("eventlog.store._log", True)},
        "eventlog.core._codec": {("eventlog.store._log", True)},
        "eventlog.cli._main": {("eventlog.server._app", False)},
    }
    assert cycles(made_up) == [["eventlog.store._compaction", "eventlog.store._log"]]
    assert layer_violations(made_up) == [
        "eventlog.cli._main (cli) imports eventlog.server._app (server)",
        "eventlog.core._codec (core) imports eventlog.store._log (store)",
    ]


def test_the_real_graph_was_read(edges: dict[str, set[tuple[str, bool]]]) -> None:
    # Spot checks that relative imports resolve to the modules they name.
    assert ("eventlog.store._folding", False) in edges["eventlog.store._log"]
    assert ("eventlog.backends.files._checks", False) in edges["eventlog.backends.files._backend"]
    assert ("eventlog.cli._args", False) in edges["eventlog.cli._commands"]


def test_the_readme_layout_names_real_modules() -> None:
    # The README's "How the code is laid out" names modules; each must exist, so the
    # section stays true to the tree as modules move.
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([A-Za-z_./]+)`", section))
    modules = {path.stem for path in PACKAGE.rglob("_*.py")}
    # Paths as the README writes them: from the repository (eventlog/..., tests/...) or
    # from a layer's folder (files/_backend.py, cli/_args.py, redis/).
    paths = {path.relative_to(PACKAGE.parent).as_posix()
             for top in (PACKAGE, PACKAGE.parent / "tests") for path in [top, *top.rglob("*")]}
    missing = []
    for name in sorted(names):
        path = name.split(".py")[0].split(".")[0].rstrip("/")  # core/_codec.ChainReader: core/_codec
        if "/" in name:
            found = any(p == path or p.endswith(f"/{path}") or p.endswith(f"/{path}.py")
                        or p == f"{path}.py" for p in paths)
        elif path.startswith("_"):
            found = path in modules
        else:
            continue  # a function or option name, checked by the README's other tests
        if not found:
            missing.append(name)
    assert missing == []
    assert len(names) > 30, "the section's module names were not found"
