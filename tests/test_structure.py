"""The tree shows the architecture: no import cycles, and dependencies point one way down the layers."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from core.caching import imported_names

REPO = Path(__file__).resolve().parents[1]
# lower may not import higher; samples/ (generated media with ground truth) is a product package: the
# demos (`--demo`) and the enhance yardstick make their media with it, tests and benches their corpora
LAYERS = ["core", "gpu", "stages", "samples", "blocks", "runtime", "flows", "deployments"]


def _modules() -> dict[str, Path]:
    out = {}
    for layer in LAYERS:
        for path in (REPO / layer).rglob("*.py"):
            out[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for imported in imported_names(path):  # the stage cache's reading (core/caching.py)
            while imported and imported not in mods:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                deps.add(imported)
        graph[name] = deps
    return graph


def test_layers_point_one_way() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [
        f"{mod} -> {dep}"
        for mod, deps in _graph().items()
        for dep in deps
        if rank[dep.split(".")[0]] > rank[mod.split(".")[0]]
    ]
    assert not upward, f"imports against the layer order {LAYERS}: {upward}"


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


RUN_POLICY_OPTIONS = {
    "retries",
    "retry_delay_seconds",
    "retry_condition_fn",
    "retry_jitter_factor",
    "timeout_seconds",
}


def test_the_run_policy_is_the_only_source_of_stage_retries_and_timeouts() -> None:
    """`Stages` applies the RunPolicy block to every stage run: a decorator's own retries would be replaced
    on every run and only mislead the reader (and differ where a task runs without the policy)."""
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = getattr(node, "func", None)
            if isinstance(node, ast.Call) and getattr(called, "id", getattr(called, "attr", "")) == "task":
                own = [k.arg for k in node.keywords if k.arg in RUN_POLICY_OPTIONS]
                found += [f"{name}:{node.lineno} {', '.join(own)}"] if own else []
    assert not found, f"task decorators with their own retries or timeouts: {found}"


def _imported_packages(nodes: list[ast.AST]) -> set[str]:
    """Top-level names of the packages `import`ed in these nodes (absolute imports only)."""
    names = set()
    for node in nodes:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names.update(a.name.split(".")[0] for a in inner.names)
            elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                names.add(inner.module.split(".")[0])
    return names


def test_what_the_product_uses_of_samples_needs_only_product_dependencies() -> None:
    """`samples` ships in the wheel (pyproject's packages), and what flows and deployments call from it (the
    demo video, demo faces, the yardstick's photos) imports only the standard library, this repository and
    the distribution's own dependencies: never a test extra (jiwer) or an optional engine (torch)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "samples*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    declared = {
        re.split(r"[<>=!~\[; ]", dep)[0].lower().replace("_", "-")
        for dep in project["project"]["dependencies"]
    }
    providers = packages_distributions()
    used: dict[str, set[str]] = {}  # samples module -> names the product imports from it
    for layer in ("flows", "deployments"):
        for path in (REPO / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("samples."):
                    used.setdefault(node.module, set()).update(a.name for a in node.names)
    assert used, "flows make their demo media with samples/"
    undeclared = []
    for module, names in used.items():
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        seen, todo = set(), [name for name in names if name in functions]
        while todo:  # the functions used and the module's functions they call, in turn
            seen.add(name := todo.pop())
            calls = {getattr(c.func, "id", "") for c in ast.walk(functions[name]) if isinstance(c, ast.Call)}
            todo += sorted((calls & set(functions)) - seen - set(todo))
        called = [functions[name] for name in seen]
        for package in _imported_packages(top + called) - set(sys.stdlib_module_names) - set(LAYERS):
            dists = {d.lower().replace("_", "-") for d in providers.get(package, [])}
            if not dists & declared:
                undeclared.append(f"{module}: {package} ({', '.join(sorted(dists)) or 'not installed'})")
    assert not undeclared, f"the product's sample media need packages it does not declare: {undeclared}"
