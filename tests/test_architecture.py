"""The package boundaries of ``shared/ARCHITECTURE.md``, checked on the import statements of every
module (function-level imports included): imports point one way and there is no cycle anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"qsilicon": "qsilicon", "quant": "qsilicon.quant", "hw": "qsilicon.hw", "sim": "qsilicon.sim",
            "search": "qsilicon.search", "boards": "qsilicon.boards", "flow": "qsilicon.flow"}
#: package -> the packages of ours it may import (besides itself and the top-level ``qsilicon``)
ALLOWED = {
    "quant": set(),
    "boards": set(),
    "hw": {"quant", "boards"},
    "search": {"quant", "boards", "hw"},
    "sim": {"hw", "quant", "boards"},
    "flow": {"quant", "boards", "hw", "search", "sim"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            parts = list(f.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = f
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The qsilicon modules that ``name`` imports, resolved to modules of :data:`MODULES`."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = here[: len(here) - node.level + 1]
                base = ".".join([*stem, *([base] if base else [])])
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if not t.startswith("qsilicon"):
                continue
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            # a module's own packages are being imported already when it runs: no edge to them
            if t and t != name and not name.startswith(t + "."):
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "qsilicon"


def test_every_module_is_seen():
    assert "qsilicon.quant.intops" in GRAPH and "qsilicon.flow.cli" in GRAPH and "qsilicon.hw.vit.system" in GRAPH
    assert "qsilicon.quant.intops" in GRAPH["qsilicon.quant.linear"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    bad = sorted((m, t) for m, ts in GRAPH.items() if _package(m) == package for t in ts
                 if _package(t) not in ALLOWED[package] | {package, "qsilicon"})
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}: {bad}"


def test_no_import_cycle():
    # Tarjan's strongly connected components; any component of more than one module is a cycle.
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not comps, f"import cycles: {comps}"


def test_quant_and_search_load_no_gateware_tools():
    """quant/ never imports Amaranth or cocotb; search/ never imports Amaranth (models must be fast)."""
    for name, path in MODULES.items():
        tops = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops.add(node.module.split(".")[0])
        if _package(name) == "quant":
            assert not tops & {"amaranth", "cocotb", "cocotb_tools"}, name
        if _package(name) == "search":
            assert "amaranth" not in tops, name
