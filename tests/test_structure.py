"""The tree shows the architecture: no import cycles, and dependencies point one way down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["core", "gpu", "stages", "blocks", "runtime", "flows", "deployments"]  # lower may not import higher


def _modules() -> dict[str, Path]:
    out = {}
    for layer in LAYERS:
        for path in (REPO / layer).rglob("*.py"):
            out[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    return out


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for imported in _imports(path):
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
