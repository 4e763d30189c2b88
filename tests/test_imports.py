"""Imports point one way: knowledge -> advisor -> plan <- executor, and the chat sits on top of the advisor.

Every module's imports are read with `ast` (nothing is imported, so this runs in well under a second), those
inside functions and under TYPE_CHECKING included: an import moved into a function still ties the modules
together, it only hides the circle from Python's loader.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("assistant", "executor")
# The `tunewise` command line mounts the advisor's, the executor's and the chat's commands: the one module
# above all three, so it may import any of them and none may import it.
COMPOSITION_ROOT = "assistant.cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (`from a.b import c` counts a.b.c when that is
    a module, else a.b)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` binds the packages too, but only the deepest known module is the dependency.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def layer(module: str) -> str:
    if module == COMPOSITION_ROOT:
        return "root"
    if module.startswith("assistant.chat"):
        return "chat"
    if module == "executor.plan":
        return "plan"
    return module.split(".")[0]


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, directly or around a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [g for g in groups if len(g) > 1]


def test_the_graph_sees_imports_in_functions_and_under_type_checking():
    graph = import_graph()
    assert "assistant.profile" in graph["assistant.extract"]  # top level
    assert "executor.plan" in graph["executor.cli"] or "executor.plan" in graph["executor.train.runner"]
    assert len(graph) > 50


def test_no_import_cycles():
    cycles = [sorted(group) for group in strongly_connected(import_graph())]
    assert not cycles, f"modules that import each other (break the circle): {cycles}"


def test_imports_point_one_way():
    forbidden = {
        ("executor", "assistant"): "the executor reads the plan, never the advisor",
        ("executor", "chat"): "the executor never imports the chat",
        ("plan", "assistant"): "the plan is the contract both sides read; it imports neither",
        ("plan", "chat"): "the plan is the contract both sides read; it imports neither",
        ("plan", "executor"): "the plan is the contract both sides read; it imports neither",
        ("assistant", "chat"): "the chat depends on the advisor, never the reverse",
    }
    wrong = []
    for module, targets in import_graph().items():
        for target in sorted(targets):
            why = forbidden.get((layer(module), layer(target)))
            if why is None and layer(target) == "root":
                why = "the command line mounts everything; nothing imports it"
            if why:
                wrong.append(f"{module} -> {target}: {why}")
    assert not wrong, "\n".join(wrong)


LAZY_IMPORTS = "Lazy imports:"  # a docstring line that says why its module imports inside functions


def late_imports(path: Path) -> list[ast.stmt]:
    return [node for function in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_imports_inside_functions_say_why():
    """An import inside a function is there to keep start-up fast (the CLI's `--help`, the chat's first page, a run
    process that needs no GPU library yet). Its line, or the line above, says what it saves, or the module's
    docstring says it once for all of them in a line that starts with `Lazy imports:`. The standard library is
    imported at the top: it costs nothing worth hiding."""
    import sys

    silent = []
    for path in project_modules().values():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        docstring = ast.get_docstring(ast.parse(source)) or ""
        declared = any(line.strip().startswith(LAZY_IMPORTS) for line in docstring.splitlines())
        for node in late_imports(path):
            name = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
            said = "#" in " ".join(lines[node.lineno - 2:node.end_lineno])  # the line above, or its own
            if said or (declared and name.split(".")[0] not in sys.stdlib_module_names):
                continue
            silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "imports inside functions without a reason:\n" + "\n".join(silent)
