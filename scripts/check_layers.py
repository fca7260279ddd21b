"""The layers of backend/, held to the code: `make lint` runs this and fails on an import that
goes up a layer, or on an import cycle between modules.

    edges      dbsync.cli, progress, lambdas, app    read the settings, call one service; show progress
    settings   dbsync.settings, environment,         the environment, Secrets Manager, CloudWatch
               secrets, metrics
    sync       dbsync.sync, verify                   the run and its phases; verify, which checks its result
    services   dbsync.masking, sequences, safety,    what the sync (and mask, check-rules,
               align, compare                        reset-sequences) are made of
    catalog    dbsync.catalog                        reads pg_catalog, never writes
    db         dbsync.connect, sessions, interrupt,  connections, their settings, signals,
               sqltext                               the one door for SQL made from text
    base       dbsync.errors, results                errors, exit codes, result types

It also holds the one door for SQL made from text: outside dbsync/sqltext.py, `sql.SQL(…)` takes a
string constant (or a choice between constants), never text made at run time.

A module may import from its own layer and the layers below it. Every import counts, a function's
own `import` inside it too: a lazy import is still a dependency. Imports under `if TYPE_CHECKING:`
count for the layers but not for cycles (they run nothing).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

# Highest first; a module belongs to the first (longest) prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("edges", ("dbsync.cli", "dbsync.progress", "lambdas", "app")),
    ("settings", ("dbsync.settings", "dbsync.environment", "dbsync.secrets", "dbsync.metrics")),
    ("sync", ("dbsync.sync", "dbsync.verify")),
    ("services", ("dbsync.masking", "dbsync.sequences", "dbsync.safety", "dbsync.align", "dbsync.compare")),
    ("catalog", ("dbsync.catalog",)),
    ("db", ("dbsync.connect", "dbsync.sessions", "dbsync.interrupt", "dbsync.sqltext")),
    ("base", ("dbsync.errors", "dbsync.results", "dbsync")),
]
RANK = {name: len(LAYERS) - i for i, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if layer_of(name):
            out[name] = path
    return out


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under `if TYPE_CHECKING:`: annotations, not dependencies that run."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported project module, line, for annotations only) for every import in the file,
    relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno, id(node) in type_only


def violations(root: Path) -> list[str]:
    found = modules(root)
    known = set(found)
    graph: dict[str, set[str]] = {m: set() for m in found}
    problems = []
    for name, path in found.items():
        for target, line, type_only in imports(name, path, known):
            if name.startswith(target + "."):
                continue  # a package's own __init__ is not a dependency of its modules
            if not type_only:  # a cycle through annotations alone runs no code
                graph[name].add(target)
            here, there = layer_of(name), layer_of(target)
            if RANK[there] > RANK[here]:
                problems.append(f"{path.relative_to(root)}:{line}: {name} ({here}) imports {target} ({there}),"
                                " a layer above it")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    problems += [f"{path.relative_to(root)}:{line}: {text}: SQL from text goes through dbsync.sqltext"
                 for name, path in found.items() if name != "dbsync.sqltext" for line, text in sql_from_text(path)]
    return problems


def _constant(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, ast.IfExp) and _constant(node.body) and _constant(node.orelse)


def sql_from_text(path: Path) -> Iterator[tuple[int, str]]:
    """`sql.SQL(x)` calls whose x is not a string constant."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "SQL"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "sql"
                and not (len(node.args) == 1 and _constant(node.args[0]))):
            yield node.lineno, ast.unparse(node)[:80]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "backend")
    problems = violations(root)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check_layers: {len(problems)} problem(s): see the rules in scripts/check_layers.py", file=sys.stderr)
        return 1
    print(f"check_layers: {len(modules(root))} modules, every import within its layers, no cycle,"
          " SQL from text only through dbsync.sqltext")
    return 0


if __name__ == "__main__":
    sys.exit(main())
