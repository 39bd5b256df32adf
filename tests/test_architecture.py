"""The architecture of docs/architecture.md, checked: modules of at most ~450 lines, imports
that run one way between the layers, no import cycle between modules."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skipperdask"
#: the layers, lowest first: a module may import its own layer's modules and lower layers'
LAYERS = (
    ("errors", "version", "lazy"),
    ("config",),
    ("blas",),
    ("io",),
    ("statistics",),
    ("fitting",),
    ("metrics",),
    ("catalogue",),
    ("simulate",),
    ("campaign",),
    ("plots",),
    ("cli",),
    ("__init__", "__main__"),
)
MAX_LINES = 450


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name, path):
    """The package's modules that a module imports, anywhere in it (lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            for alias in node.names:  # a submodule imported by name, else its package
                submodule = f"{origin}.{alias.name}"
                found.add(submodule if submodule in MODULES else origin)
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name):
    top = name.split(".")[1] if "." in name else "__init__"
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{name} is in no layer of docs/architecture.md")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name}: {lines} lines"


def test_imports_run_down_the_layers():
    upward = [(name, imported) for name, imports in GRAPH.items() for imported in imports
              if _layer(imported) > _layer(name)]
    assert not upward, "imports from a higher layer: " + ", ".join(
        f"{a} -> {b}" for a, b in upward)


def test_no_import_cycle():
    # depth-first search; a module met again while on the path closes a cycle
    state, path = {}, []

    def visit(name):
        state[name] = "open"
        path.append(name)
        for imported in sorted(GRAPH[name]):
            if state.get(imported) == "open":
                cycle = path[path.index(imported):] + [imported]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported)
        path.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
