"""The import graph of the package has no cycles; ``import recurrent_rl`` stays light; old paths work.

The graph is read from the files on disk (``recurrent_rl/**.py``, and ``envs/**.py`` as
``recurrent_rl.envs.*``) with :mod:`ast`, not by importing them. Its rules:

- Every ``import`` and ``from ... import`` counts, at module level and inside functions and
  methods (an import deferred into a function still ties the two modules together; it only
  moves the failure to run time). Imports under ``if TYPE_CHECKING:`` never run and are left out,
  and so are ``importlib.import_module("...")`` strings (the package's lazy attributes).
- Relative imports are resolved against the importing module's package (a package's
  ``__init__`` is its own package).
- ``import a.b.c`` depends on ``a.b.c``; ``from a.b import c`` depends on the submodule ``a.b.c``
  if there is one, else on ``a.b`` (``c`` is a name defined there).
- Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and of ``a.b`` first, so those are
  dependencies too, except the importing module's own ancestor packages: a module only runs
  once its parent packages have started (they are in ``sys.modules`` already), so reaching
  them through a sibling re-runs nothing. An explicit dependency on an ancestor's own names
  (``from recurrent_rl.envs import make_masked`` inside ``recurrent_rl.envs.x``) does count:
  that is the classic partially-initialised-module cycle when the ``__init__`` imports ``x``.
- The flat module paths of ``recurrent_rl._aliases.OLD_PATHS`` are read as their new homes, and
  a name of the package's lazy table (``recurrent_rl._PUBLIC``, PEP 562 ``__getattr__``) as an
  import of the module that defines it: ``from recurrent_rl import RecurrentPPO`` depends on
  ``recurrent_rl`` and on ``recurrent_rl.ppo.algorithm``.

A cycle is a strongly connected component of more than one module; the failure lists each
with one shortest loop through it and all the imports inside it, every edge with its
``file:line`` (``deferred`` for an import inside a function).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"recurrent_rl": ROOT / "recurrent_rl", "recurrent_rl.envs": ROOT / "envs"}
PACKAGE = "recurrent_rl"


@dataclass(frozen=True)
class Edge:
    target: str
    path: Path
    line: int
    deferred: bool

    def where(self) -> str:
        try:
            shown = self.path.relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}" + (", deferred" if self.deferred else "")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(sources: dict[str, Path]) -> dict[str, Module]:
    """Module name -> file, for every ``.py`` under each source folder (``{prefix: folder}``)."""
    modules: dict[str, Module] = {}
    for prefix, folder in sources.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            is_package = parts[-1] == "__init__"
            name = ".".join((prefix, *(parts[:-1] if is_package else parts)))
            modules[name] = Module(name, path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
        self._depth = 0  # inside a function (its body runs later, if at all)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # `else:` of `if TYPE_CHECKING:` does run
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._depth > 0))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _canonical(name: str, aliases: dict[str, str]) -> str:
    """A flat old path (or a module below one) as its new home."""
    for old, new in aliases.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return name


def imported_modules(
    module: Module,
    modules: dict[str, Module],
    aliases: dict[str, str],
    lazy: dict[str, dict[str, str]],
    root: str = PACKAGE,
) -> list[Edge]:
    """The modules of ``root`` that ``module`` imports (targets may be unknown names: see the test)."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    collector = _ImportCollector()
    collector.visit(tree)
    targets: list[tuple[str, int, bool]] = []
    for node, deferred in collector.found:
        if isinstance(node, ast.Import):
            targets += [(alias.name, node.lineno, deferred) for alias in node.names]
            continue
        if node.level:
            base_parts = module.package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        base = _canonical(base, aliases)
        for alias in node.names:
            sub = _canonical(f"{base}.{alias.name}", aliases)
            if alias.name != "*" and sub in modules:
                targets.append((sub, node.lineno, deferred))
                continue
            targets.append((base, node.lineno, deferred))
            if alias.name in lazy.get(base, {}):
                targets.append((lazy[base][alias.name], node.lineno, deferred))

    edges: dict[tuple[str, int], Edge] = {}  # one per dependency and line
    own_ancestors = set(_ancestors(module.name))
    for target, line, deferred in targets:
        target = _canonical(target, aliases)
        if target != root and not target.startswith(root + "."):
            continue
        for dependency in [*_ancestors(target), target]:
            if dependency == module.name or (dependency in own_ancestors and dependency != target):
                continue
            edges.setdefault((dependency, line), Edge(dependency, module.path, line, deferred))
    return list(edges.values())


def import_graph(
    sources: dict[str, Path],
    aliases: dict[str, str],
    lazy: dict[str, dict[str, str]] | None = None,
    root: str = PACKAGE,
) -> tuple[dict[str, Module], dict[str, list[Edge]]]:
    modules = find_modules(sources)
    return modules, {
        name: imported_modules(module, modules, aliases, lazy or {}, root) for name, module in modules.items()
    }


def strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's components of more than one node, each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # recursion depth is bounded by the module count (~60)
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.target not in graph:
                continue
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def shortest_loop(graph: dict[str, list[Edge]], component: list[str]) -> list[tuple[str, Edge]]:
    """One shortest cycle through the component's first module, as (from, edge) steps."""
    start, members = component[0], set(component)
    previous: dict[str, tuple[str, Edge]] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for edge in graph[node]:
            if edge.target not in members:
                continue
            if edge.target == start:
                steps = [(node, edge)]
                while node != start:
                    node, via = previous[node]
                    steps.append((node, via))
                return steps[::-1]
            if edge.target not in previous:
                previous[edge.target] = (node, edge)
                queue.append(edge.target)
    raise AssertionError(f"no loop through {start}")


def describe_cycles(graph: dict[str, list[Edge]]) -> str:
    lines = []
    for component in strongly_connected(graph):
        members = set(component)
        lines.append(f"cycle among {', '.join(component)}; a shortest loop:")
        lines += [
            f"    {source} -> {edge.target}  ({edge.where()})" for source, edge in shortest_loop(graph, component)
        ]
        lines.append("  all imports inside it:")
        lines += [
            f"    {source} -> {edge.target}  ({edge.where()})"
            for source in component
            for edge in graph[source]
            if edge.target in members
        ]
    return "\n".join(lines)


def _aliases() -> dict[str, str]:
    from recurrent_rl._aliases import OLD_PATHS

    return dict(OLD_PATHS)


def _lazy() -> dict[str, dict[str, str]]:
    import recurrent_rl

    return {PACKAGE: dict(getattr(recurrent_rl, "_PUBLIC", {}))}


# --- the package -----------------------------------------------------------------------------


def test_the_package_has_no_import_cycles() -> None:
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    assert len(modules) > 30 and "recurrent_rl.envs.registry" in modules and "recurrent_rl.nets.memory" in modules
    report = describe_cycles(graph)
    assert report == "", "import cycles (see this file's docstring for the rules):\n" + report


def test_every_internal_import_names_a_module_of_the_package() -> None:
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    unknown = sorted(
        {f"{edge.target}  ({edge.where()})" for edges in graph.values() for edge in edges if edge.target not in modules}
    )
    assert unknown == []


# what each part may import (the subpackages' docstrings); "recurrent_rl" alone is the lazy package root
LAYERS = {
    "recurrent_rl.types": (),
    "recurrent_rl.errors": (),
    "recurrent_rl.sequences": (),
    "recurrent_rl.versions": (),
    "recurrent_rl.atomic": (),
    "recurrent_rl.received": ("recurrent_rl.errors",),
    "recurrent_rl.cluster": ("recurrent_rl.errors",),
    "recurrent_rl.envs": ("recurrent_rl.envs",),
    "recurrent_rl.nets": ("recurrent_rl.nets", "recurrent_rl.types", "recurrent_rl.errors", "recurrent_rl.sequences"),
    "recurrent_rl.ppo": (
        "recurrent_rl.ppo",
        "recurrent_rl.nets",
        "recurrent_rl.types",
        "recurrent_rl.errors",
        "recurrent_rl.sequences",
    ),
    "recurrent_rl.sac": (
        "recurrent_rl.sac",
        "recurrent_rl.ppo",
        "recurrent_rl.nets",
        "recurrent_rl.types",
        "recurrent_rl.errors",
        "recurrent_rl.sequences",
    ),
    "recurrent_rl.runners": (
        "recurrent_rl.runners",
        "recurrent_rl.ppo",
        "recurrent_rl.nets",
        "recurrent_rl.types",
        "recurrent_rl.errors",
        "recurrent_rl.sequences",
        "recurrent_rl.cluster",
    ),
    "recurrent_rl.accel": (
        "recurrent_rl.accel",
        "recurrent_rl.nets",
        "recurrent_rl.types",
        "recurrent_rl.errors",
        "recurrent_rl.sequences",
    ),
}


def _layer(name: str) -> str | None:
    return next((layer for layer in LAYERS if name == layer or name.startswith(layer + ".")), None)


def test_each_part_imports_only_what_its_docstring_allows() -> None:
    """The model code (nets), the algorithm (ppo) and the leaf modules never import the speed layer
    (accel), the runs or the supervised side; accel builds on nets only."""
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    wrong = []
    for name, edges in graph.items():
        layer = _layer(name)
        if layer is None:
            continue
        for edge in edges:
            if edge.target in (PACKAGE, "recurrent_rl.envs") or _layer(edge.target) in LAYERS[layer]:
                continue  # the package root (its __init__ registers the envs) is every module's parent
            wrong.append(f"{name} -> {edge.target} ({edge.where()})")
    assert wrong == [], "imports across the layers:\n" + "\n".join(wrong)


def _fresh_modules(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    ["import recurrent_rl", "import recurrent_rl.envs", "import gymnasium as gym; gym.make('pomdp/CartPoleNoVel-v1')"],
)
def test_importing_the_package_loads_no_torch_or_sb3(code: str) -> None:
    loaded = _fresh_modules(code)
    assert "recurrent_rl.envs" in loaded or "gymnasium" not in code
    assert [m for m in loaded if m.split(".")[0] in ("torch", "stable_baselines3", "sb3_contrib")] == []


def test_old_flat_paths_are_the_new_modules() -> None:
    # in a fresh interpreter: importing the old paths here would change this process's modules
    aliases = _aliases()
    assert aliases, "OLD_PATHS is empty"
    code = f"""
import importlib
for old, new in {sorted(aliases.items())!r}:
    assert importlib.import_module(old) is importlib.import_module(new), old
    assert sys.modules[old] is sys.modules[new], old
from recurrent_rl.policies import MlpGruPolicy
from recurrent_rl.nets.policies import MlpGruPolicy as new
assert MlpGruPolicy is new
import recurrent_rl.config, recurrent_rl.config.train
assert recurrent_rl.config is recurrent_rl.config.train
"""
    _fresh_modules(code)


def test_importing_an_old_path_leaves_the_new_module_as_it_was() -> None:
    aliases = _aliases()
    code = f"""
import importlib
from importlib import resources
specs = {{new: importlib.import_module(new).__spec__ for new in {sorted(set(aliases.values()))!r}}}
for old in {sorted(aliases)!r}:
    importlib.import_module(old)
changed = [new for new, spec in specs.items() if sys.modules[new].__spec__ is not spec]
assert changed == [], changed
resources.files("recurrent_rl.config.presets")
"""
    _fresh_modules(code)


# --- the graph rules, on small packages written for the purpose ------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"pkg": root / "pkg"}


def _cycles(tmp_path: Path, files: dict[str, str]) -> list[list[str]]:
    _, graph = import_graph(_write(tmp_path, files), {}, root="pkg")
    return strongly_connected(graph)


def test_rules_a_mutual_import_is_a_cycle_even_when_deferred(tmp_path: Path) -> None:
    files = {"__init__.py": "", "a.py": "from pkg.b import f\n", "b.py": "def f():\n    from pkg import a\n"}
    assert _cycles(tmp_path, files) == [["pkg.a", "pkg.b"]]
    _, graph = import_graph(_write(tmp_path, files), {}, root="pkg")
    assert "pkg/b.py:2, deferred" in describe_cycles(graph).replace(str(tmp_path) + "/", "")


def test_rules_type_checking_imports_are_left_out(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "a.py": "from pkg.b import f\n",
        "b.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import g\nelse:\n    pass\ndef f(): ...\n",
    }
    assert _cycles(tmp_path, files) == []
    files["b.py"] = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    from pkg import a\n"
    assert _cycles(tmp_path, files) == [["pkg.a", "pkg.b"]]


def test_rules_relative_imports_resolve_against_the_package(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "sub/__init__.py": "from . import x\n",  # pkg.sub.x
        "sub/x.py": "from ..y import z\n",  # pkg.y, name z
        "y.py": "from .sub.x import w\n",  # pkg.sub.x
    }
    _, graph = import_graph(_write(tmp_path, files), {}, root="pkg")
    assert [e.target for e in graph["pkg.sub"]] == ["pkg.sub.x"]
    assert [e.target for e in graph["pkg.sub.x"]] == ["pkg.y"]
    assert [e.target for e in graph["pkg.y"]] == ["pkg.sub", "pkg.sub.x"]
    assert strongly_connected(graph) == [["pkg.sub", "pkg.sub.x", "pkg.y"]]


def test_rules_a_sibling_reached_through_the_parent_package_is_no_cycle(tmp_path: Path) -> None:
    # the package __init__ imports its submodules, which import each other by full path
    files = {
        "__init__.py": "from pkg.a import f\nfrom pkg import b\n",
        "a.py": "import pkg.b\ndef f(): ...\n",
        "b.py": "x = 1\n",
    }
    assert _cycles(tmp_path, files) == []
    # but a submodule that takes a name from its own package's __init__, which imports it, is one
    files["b.py"] = "from pkg import f\n"
    assert _cycles(tmp_path, files) == [["pkg", "pkg.a", "pkg.b"]]


def test_rules_a_module_importing_a_cousin_runs_the_cousins_package(tmp_path: Path) -> None:
    # pkg.one.a -> pkg.two.b runs pkg.two's __init__, which imports pkg.one.a back
    files = {
        "__init__.py": "",
        "one/__init__.py": "",
        "one/a.py": "from pkg.two.b import f\n",
        "two/__init__.py": "from pkg.one import a\n",
        "two/b.py": "def f(): ...\n",
    }
    assert _cycles(tmp_path, files) == [["pkg.one.a", "pkg.two"]]


def test_rules_old_paths_are_read_as_their_new_homes(tmp_path: Path) -> None:
    files = {
        "__init__.py": "",
        "new/__init__.py": "",
        "new/a.py": "from pkg.b import f\n",
        "b.py": "from pkg.old_a import g\n",
    }
    _, graph = import_graph(_write(tmp_path, files), {"pkg.old_a": "pkg.new.a"}, root="pkg")
    assert [e.target for e in graph["pkg.b"]] == ["pkg.new", "pkg.new.a"]
    assert strongly_connected(graph) == [["pkg.b", "pkg.new.a"]]


def test_rules_lazy_package_attributes_are_imports_of_their_modules(tmp_path: Path) -> None:
    files = {
        "__init__.py": "def __getattr__(name): ...\n",
        "a.py": "def f():\n    from pkg import Thing\n",
        "b.py": "from pkg.a import f\n",
    }
    _, graph = import_graph(_write(tmp_path, files), {}, {"pkg": {"Thing": "pkg.b"}}, root="pkg")
    assert [e.target for e in graph["pkg.a"]] == ["pkg", "pkg.b"]
    assert strongly_connected(graph) == [["pkg.a", "pkg.b"]]
