"""The package layout is the architecture (docs/architecture.md): imports flow one way between
the stages, no module-level import cycle, function-local imports only where they defer a heavy
library (and say so), and the read-only stages never load torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "regbench"

# stage -> the stages it may import (besides itself); a stage is a subpackage or a module of
# the package root. Anything not listed may not be imported by that stage.
BASE = {"errors", "registry", "vocabulary", "config", "results"}
ALLOWED = {
    "errors": set(), "vocabulary": set(), "registry": {"errors", "vocabulary"},
    "config": {"errors", "registry", "vocabulary"},
    "results": {"errors", "vocabulary", "config"},
    "models": BASE, "data": BASE, "regularizers": BASE | {"models"},
    "plugins": BASE | {"models", "data", "regularizers"},
    "engine": BASE | {"models", "data", "regularizers", "plugins"},
    "analysis": BASE | {"data", "regularizers", "catalogue"},
    "report": BASE | {"analysis"},
    "tracking": BASE | {"data", "analysis"},
    "experiment": BASE | {"models", "data", "regularizers", "engine", "analysis", "report",
                          "plugins", "tracking"},
    "catalogue": BASE | {"catalogue_live"},
    "catalogue_live": BASE | {"models", "data", "regularizers"},
    "gallery": BASE | {"models", "data", "engine", "analysis", "report", "experiment"},
    "cli": BASE | {"engine", "experiment", "analysis", "report", "gallery", "catalogue",
                   "plugins"},
    "__main__": {"cli"}, "__init__": {"experiment", "plugins", "regularizers"},
    # the conformance kit for plugins' tests: it trains through the real path; nothing imports it
    "testing": BASE | {"models", "data", "regularizers", "engine", "experiment", "plugins"},
}


def module_name(path: Path) -> str:
    parts = ("regbench",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(node: ast.AST, module: str, path: Path) -> list[str]:
    """The package modules one import statement names (``from pkg import sub`` names pkg.sub)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parent = module.split(".")
        parent = parent if path.name == "__init__.py" else parent[:-1]
        base = ".".join(parent[: len(parent) - node.level + 1] + ([base] if base else []))
    names = [f"{base}.{a.name}" for a in node.names]
    found = [n for n in names if n in MODULES]
    return found or ([base] if base in MODULES else [])


def module_level(body: list[ast.stmt]):
    """Import statements that run when the module is imported (not under TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            yield from module_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from module_level(node.body + node.orelse + node.finalbody
                                    + [s for h in node.handlers for s in h.body])


def graph(everywhere: bool) -> dict[str, set[str]]:
    edges = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if everywhere else module_level(tree.body)
        edges[module] = {t for node in nodes for t in imported(node, module, path) if t != module}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph as a list of modules, or [] when it is acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def stage(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


@pytest.mark.parametrize("everywhere", [False, True], ids=["module level", "with local imports"])
def test_the_import_graph_has_no_cycle(everywhere):
    assert find_cycle(graph(everywhere)) == []


def test_imports_flow_one_way_between_stages():
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in graph(everywhere=True).items() for target in targets
                   if stage(target) != stage(module)
                   and stage(target) not in ALLOWED[stage(module)])
    assert wrong == []


# Function-local package imports, per module: each defers a heavy library and says so.
# cli.py's commands import the library inside their bodies (`regbench --help` answers at once),
# so a new command may add its own; elsewhere a module may defer only as many as listed here.
DEFERRED_IMPORTS = {
    "regbench.cli": None,                 # any number: one or two per command
    "regbench": 2,                        # the lazy public API (regbench.run, register_*)
    "regbench.catalogue": 2,              # the live catalogue, only when plugins are installed
    "regbench.engine.executors": 3,       # a worker process imports the engine when it starts;
                                          # the slurm executor its optional submitit
    "regbench.engine.slurm": 1,           # an array element imports the engine when it starts
    "regbench.experiment.launch": 1,      # plugins load torch; a Launch is built before them
}


def test_every_function_local_package_import_defers_a_heavy_library_and_says_so():
    local: dict[str, list[tuple[str, bool]]] = {}
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        top = set(map(id, module_level(tree.body)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top \
                    and imported(node, module, path):
                said = any("deferred" in line  # on the statement's lines or just above
                           for line in lines[node.lineno - 2:node.end_lineno])
                local.setdefault(module, []).append(
                    (f"{path.relative_to(PACKAGE)}:{node.lineno}", said))
    assert [where for found in local.values() for where, said in found if not said] == []
    over = {module: [where for where, _ in found] for module, found in local.items()
            if DEFERRED_IMPORTS.get(module, 0) is not None
            and len(found) > DEFERRED_IMPORTS.get(module, 0)}
    assert over == {}, "raise the module's entry in DEFERRED_IMPORTS only with a reason"


def test_reading_results_loads_no_torch():
    code = ("import sys, regbench, regbench.analysis.advice, regbench.analysis.compare, "
            "regbench.report.page, regbench.cli, regbench.engine.executors; "
            "print(sorted(m for m in ('torch', 'sklearn', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
