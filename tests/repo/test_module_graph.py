"""No import circles between the modules of the service, loadgen and provision.

Each `.rs` file under src/ of the three crates is a module (`src/telemetry/trace_layer.rs` is
`telemetry::trace_layer`, a `mod.rs` is its folder's module). A module uses another when it names it in
a `use` or in a path (`crate::db::query::X`, `super::propagation::extract`). A parent and its own
submodules are one unit (a `mod.rs` declares and re-exports its children, and they implement what it
declares), so an edge between a module and one of its ancestors is not a circle; any other cycle is:
two modules that each need the other cannot be understood, tested or changed apart.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRATES = {"apm-demo": ROOT / "src", "loadgen": ROOT / "loadgen" / "src", "provision": ROOT / "provision" / "src"}
ROOTS = ("lib.rs", "main.rs")
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)::\{([^}]*)\}")


def module_of(src, path):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def code_of(path):
    """The file's code without comments and without its `#[cfg(test)]` module (tests may use anything)."""
    text = re.sub(r"//[^\n]*", "", path.read_text())
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def resolve(modules, here, anchor, names):
    """The longest module path that `anchor::names...` names, from module `here`."""
    base = () if anchor == "crate" else here[:-1]
    names = list(names)
    while names and names[0] == "super":
        base, names = base[:-1], names[1:]
    target = base
    for name in names:
        if base + (name,) in modules or target + (name,) in modules:
            target = target + (name,)
        else:
            break
    return target


def graph(src):
    files = [p for p in src.rglob("*.rs") if not (p.parent == src and p.name == "main.rs")]
    modules = {module_of(src, p): p for p in files}
    edges = {m: set() for m in modules}
    for module, path in modules.items():
        code = code_of(path)
        references = [(a, rest.split("::")[1:]) for a, rest in PATH.findall(code)]
        for anchor, group in GROUP.findall(code):
            for item in group.split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    references.append((anchor, item.split("::")))
        for anchor, names in references:
            target = resolve(modules, module, anchor, names)
            related = target[:len(module)] == module or module[:len(target)] == target
            if target in modules and not related:
                edges[module].add(target)
    return edges


def cycles(edges):
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted("::".join(m) or "crate" for m in group))

    for node in edges:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("crate", CRATES)
def test_no_module_circles(crate):
    assert cycles(graph(CRATES[crate])) == []


def test_the_check_finds_a_circle():
    edges = {("a",): {("b",)}, ("b",): {("c",)}, ("c",): {("a",)}, ("d",): set()}
    assert cycles(edges) == [["a", "b", "c"]]


def test_the_graph_sees_the_edges_of_the_service():
    edges = graph(CRATES["apm-demo"])
    assert ("telemetry", "contract") in edges[("limits",)]
    assert ("telemetry", "propagation") in edges[("telemetry", "trace_layer")]
    assert ("db",) not in edges[("telemetry", "trace_layer")]
