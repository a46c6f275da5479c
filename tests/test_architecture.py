"""The package's shape, checked from its source: no import cycles, arrows that point down, no private reach-ins.

Imports are read with `ast`, at module level and inside functions alike; only imports under
`if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "zoo"

# Lower layers never import higher ones (STYLE.md: errors <- index <- store <- pipeline, runtime <- model <- cli ...).
LAYERS = [
    ("zoo.counts", "zoo.errors", "zoo.filecheck", "zoo.printable", "zoo.safejson", "zoo.version"),
    ("zoo.index",),
    ("zoo.store",),
    ("zoo.pipeline", "zoo.runtime", "zoo.check", "zoo.tuning"),
    ("zoo.runners", "zoo.prediction"),
    ("zoo.model",),
    ("zoo.api", "zoo.batch", "zoo.bench", "zoo.hub", "zoo.ray", "zoo.export", "zoo.serve", "zoo"),
    ("zoo.cli", "zoo.__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py") if "node_modules" not in p.parts}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def imports_of(name: str) -> set[str]:
    """The zoo modules `name` imports at run time."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "zoo")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != "zoo":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    found.discard(name)
    return {m for m in found if m in MODULES}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_source_tree_is_found() -> None:
    assert {"zoo.model", "zoo.runners", "zoo.index.catalog", "zoo.store.download", "zoo.cli.app"} <= set(MODULES)


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def layer_of(name: str) -> int:
    best = (-1, -1)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                best = max(best, (len(prefix), rank))
    assert best[1] >= 0, f"{name} is in no layer: add it to LAYERS"
    return best[1]


def test_imports_point_down_only() -> None:
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, deps in GRAPH.items() for b in deps if layer_of(b) > layer_of(a)]
    assert not upward, "\n".join(sorted(upward))


def _private_definitions() -> dict[str, set[str]]:
    """For each module: the _private names it defines (top level, class members, self._x attributes)."""
    out: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                target = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                target = node.attr
            if target and target.startswith("_") and not target.startswith("__"):
                names.add(target)
        out[name] = names
    return out


def test_no_module_uses_another_modules_private_names() -> None:
    defined = _private_definitions()
    everywhere = {n for names in defined.values() for n in names}
    offences = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = defined[name]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zoo"):
                offences += [f"{name}: from {node.module} import {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                holder = node.value.id if isinstance(node.value, ast.Name) else None
                if holder in ("self", "cls") or node.attr in own or node.attr not in everywhere:
                    continue
                offences.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("name", ["zoo.model", "zoo.runners"])
def test_the_run_stage_does_not_reach_the_cli(name: str) -> None:
    assert not any(dep.startswith("zoo.cli") for dep in GRAPH[name])
