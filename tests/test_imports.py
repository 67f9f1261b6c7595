"""The package's import graph has no cycle, function-level imports included: every ``import``/``from ... import``
statement anywhere in ``mvld_hf`` is an edge, so a module can be read (and moved) knowing only what it uses.
``mvld_hf/__init__.py`` re-exports the API and so imports nearly every module: no module may import it back."""

import ast
import os

import mvld_hf

PACKAGE_DIR = os.path.dirname(mvld_hf.__file__)


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _resolve(module: str, is_package: bool, node, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    # `from pkg import x` imports the submodule pkg.x when there is one, else the name x of pkg itself
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for root, _, names in os.walk(PACKAGE_DIR):
        for name in names:
            if name.endswith(".py"):
                modules[_module_name(os.path.join(root, name))] = os.path.join(root, name)
    graph = {}
    for module, path in modules.items():
        with open(path) as handle:
            tree = ast.parse(handle.read())
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                is_package = path.endswith("__init__.py")
                edges.update(t for t in _resolve(module, is_package, node, modules) if t in modules and t != module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "mvld_hf.data_utils" in graph["mvld_hf.data"]
    assert "mvld_hf.data_utils" in graph["mvld_hf.evaluation.evaluator"]  # from ..data_utils import


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_utils_is_a_leaf():
    assert not {m for m in import_graph()["mvld_hf.data_utils"] if m.startswith("mvld_hf")}


def test_public_api_is_sorted_and_importable():
    assert mvld_hf.__all__ == sorted(mvld_hf.__all__)
    assert all(hasattr(mvld_hf, name) for name in mvld_hf.__all__)
    assert "verify_checkpoint" not in mvld_hf.__all__ and "register_paired_auto_classes" not in mvld_hf.__all__
    from mvld_hf.checkpointing import verify_checkpoint
    from mvld_hf.modeling_paired import register_paired_auto_classes

    assert callable(verify_checkpoint) and callable(register_paired_auto_classes)  # importable from their modules
    assert not hasattr(mvld_hf, "verify_checkpoint")  # the 0.1 package's shims are gone
