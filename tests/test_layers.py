"""The package layout is the architecture: subpackages by role, imports pointing one way.

Every import statement of ciwheels (function-local ones too) is read from the source: a module
may import its own subpackage and the subpackages below it in LAYERS, never one above; and no
two modules import each other, directly or round a circle."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

# lowest first; each may import only itself and what is left of it
LAYERS = ["core", "catalog", "net", "isa", "matrix", "cibw", "images", "pipelines", "dist", "build", "builder",
          "project", "views", "cli"]
PACKAGE = REPO / "ciwheels"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported ciwheels module, line) for every import in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("ciwheels")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ciwheels") \
                and node.level == 0:
            for a in node.names:  # `from ciwheels.dist import variants` imports the module variants
                sub = f"{node.module}.{a.name}"
                found.append((sub if sub in modules else node.module, node.lineno))
    return [(name, line) for name, line in found if name in modules or name == "ciwheels"]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_subpackage_is_a_layer_and_says_what_it_owns():
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages == sorted(LAYERS)
    for name in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"ciwheels/{name}/__init__.py says nothing of what it owns"
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"], f"modules outside the layers: {top}"


def test_imports_point_down():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _layer(name)
        if mine is None:
            continue
        for target, line in _imports(path, modules):
            theirs = _layer(target)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{path.relative_to(REPO)}:{line}: {mine} imports {target} ({theirs} is above it)")
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    modules = _modules()
    graph = {name: {t for t, _ in _imports(path, modules) if t != name and t != "ciwheels"}
             for name, path in modules.items()}
    # packages import their own modules through __init__ rarely; a package and its module are one node
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_layering_test_sees_function_local_and_upward_imports(tmp_path):
    """The checks above read what they claim to read."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ciwheels.cli import main\n")
    modules = _modules()
    assert _imports(path, modules) == [("ciwheels.cli", 2)]
    assert LAYERS.index(_layer("ciwheels.cli")) > LAYERS.index(_layer("ciwheels.core.log"))


def test_library_modules_import_at_the_top():
    """Function-local imports hid three import circles. Outside cli/ (whose commands import
    their library lazily so that `ciwheels --help` starts fast, as its docstring says), a
    function-local import of ciwheels needs its reason on the line: `# lazy: ...`."""
    hidden = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        lines = path.read_text(encoding="utf-8").split("\n")
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                        (getattr(node, "module", None) or a.name).startswith("ciwheels") for a in node.names) \
                        and "# lazy:" not in lines[node.lineno - 1]:
                    hidden.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not hidden, "function-local imports without a reason: " + ", ".join(hidden)
