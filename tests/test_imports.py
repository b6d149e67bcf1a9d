"""The import graph of the package runs one way: no cycles, each part imports only what its
docstring allows, and no import hides in a string; ``import recurrent_rl`` stays light; old paths work.

The graph is read from the files on disk (``recurrent_rl/**.py``, and ``envs/**.py`` as
``recurrent_rl.envs.*``) with :mod:`ast`, not by importing them. Its rules:

- Every ``import`` and ``from ... import`` counts, at module level and inside functions and
  methods (an import deferred into a function still ties the two modules together; it only
  moves the failure to run time). Imports under ``if TYPE_CHECKING:`` never run and are left out.
- A string that names a module of the package (``"recurrent_rl.accel.backend"``, as
  ``importlib.import_module`` takes it) is an import too, of the module that holds the string
  (a *string import*); the packages' lazy tables (``_PUBLIC = {name: "module"}`` in an
  ``__init__``, PEP 562) and ``recurrent_rl._aliases.OLD_PATHS`` are read as what they are instead.
  Exactly one string import may exist: the backend hook finding the speed backend
  (``nets.backend`` -> ``accel.backend``), a named plugin edge; it points up by design, so the
  cycle check leaves it out.
- Relative imports are resolved against the importing module's package (a package's
  ``__init__`` is its own package).
- ``import a.b.c`` depends on ``a.b.c``; ``from a.b import c`` depends on the submodule ``a.b.c``
  if there is one, else on ``a.b`` (``c`` is a name defined there, or in its lazy table: then on
  the module that defines it).
- Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and of ``a.b`` first, so those are
  dependencies too, except the importing module's own ancestor packages: a module only runs
  once its parent packages have started (they are in ``sys.modules`` already), so reaching
  them through a sibling re-runs nothing. An explicit dependency on an ancestor's own names
  (``from recurrent_rl.envs import make_masked`` inside ``recurrent_rl.envs.x``) does count:
  that is the classic partially-initialised-module cycle when the ``__init__`` imports ``x``.
- The flat module paths of ``recurrent_rl._aliases.OLD_PATHS`` are read as their new homes.

What a part may import is written in its docstring, in a sentence ``May import: ``a``, ``b`` and
the leaf modules.`` (a subpackage's in its ``__init__``, a top-level module's in itself):
names in double backticks are parts of the package (``nets`` is ``recurrent_rl.nets``), "the
leaf modules" are :data:`LEAVES`, "everything" is everything. Every part besides the package
root, its aliases and ``__main__`` must have one.

A cycle is a strongly connected component of more than one module; the failure lists each
with one shortest loop through it and all the imports inside it, every edge with its
``file:line`` (``deferred`` for an import inside a function, ``string`` for a string import).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
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
    string: bool = False  # a string naming the module (importlib.import_module's argument)

    def where(self) -> str:
        try:
            shown = self.path.relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}" + (", string" if self.string else ", deferred" if self.deferred else "")


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


class _StringCollector(ast.NodeVisitor):
    """The string constants of a module that are not docstrings, lazy tables or alias tables."""

    SKIPPED_TABLES = ("_PUBLIC", "OLD_PATHS")

    def __init__(self) -> None:
        self.found: list[tuple[str, int]] = []

    def _body(self, node: ast.AST) -> None:
        body = getattr(node, "body", [])
        for index, child in enumerate(body):
            is_docstring = index == 0 and isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant)
            if not is_docstring:
                self.visit(child)

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _body

    def visit_Assign(self, node: ast.Assign) -> None:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if not any(name in self.SKIPPED_TABLES for name in names):
            self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if not (isinstance(node.target, ast.Name) and node.target.id in self.SKIPPED_TABLES):
            self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.found.append((node.value, node.lineno))


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
    strings = _StringCollector()
    strings.visit(tree)
    for text, line in strings.found:
        target = _canonical(text, aliases)
        # the package's own name is also a distribution's, a metadata key's: only its modules count
        if target in modules and target not in (module.name, root):
            edges.setdefault((target, line), Edge(target, module.path, line, True, string=True))
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
    """Every package's lazy table (``_PUBLIC``: name -> the module that defines it)."""
    modules = find_modules(SOURCES)
    tables = {}
    for name, module in modules.items():
        if module.is_package and "_PUBLIC" in module.path.read_text(encoding="utf-8"):
            tables[name] = dict(getattr(importlib.import_module(name), "_PUBLIC", {}))
    return tables


# --- the package -----------------------------------------------------------------------------


def test_the_package_has_no_import_cycles() -> None:
    """Cycles through string imports count; the one plugin edge (the backend hook naming the speed
    backend, which builds on the hook) points up by design and is left out."""
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    graph = {name: [e for e in edges if (name, e.target) not in PLUGIN_EDGES] for name, edges in graph.items()}
    assert len(modules) > 30 and "recurrent_rl.envs.registry" in modules and "recurrent_rl.nets.memory" in modules
    report = describe_cycles(graph)
    assert report == "", "import cycles (see this file's docstring for the rules):\n" + report


def test_every_internal_import_names_a_module_of_the_package() -> None:
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    unknown = sorted(
        {f"{edge.target}  ({edge.where()})" for edges in graph.values() for edge in edges if edge.target not in modules}
    )
    assert unknown == []


# the leaf modules (what "the leaf modules" means in a docstring): they import nothing of the
# package but each other's errors and the envs' registry
LEAVES = (
    "types",
    "errors",
    "sequences",
    "atomic",
    "versions",
    "received",
    "schedules",
    "threads",
    "cluster",
)
ALWAYS = (PACKAGE, "recurrent_rl.envs")  # the root (its __init__ registers the envs) runs before any part
UNDECLARED = (PACKAGE, "recurrent_rl._aliases", "recurrent_rl.__main__")  # the root, its aliases, the entry point
PLUGIN_EDGES = {("recurrent_rl.nets.backend", "recurrent_rl.accel.backend")}  # the one allowed string import
_MAY_IMPORT = re.compile(r"May import:(?P<text>.*?)(?:\.\s|\.$|\n\s*\n|$)", re.DOTALL)


def part_of(name: str) -> str:
    """The part a module belongs to: its subpackage (``recurrent_rl.nets``) or itself (a top-level module)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def declared_imports(docstring: str, root: str = PACKAGE) -> set[str] | None:
    """The parts a docstring's ``May import:`` sentence names; None: it has none; ``{"*"}``: everything."""
    match = _MAY_IMPORT.search(docstring or "")
    if match is None:
        return None
    text = " ".join(match["text"].split())
    if text.startswith("everything"):
        return {"*"}
    names = {f"{root}.{token.removeprefix(root + '.')}" for token in re.findall(r"``([\w.]+)``", text)}
    if "the leaf modules" in text:
        names |= {f"{root}.{leaf}" for leaf in LEAVES}
    return names


def declarations(modules: dict[str, Module]) -> dict[str, set[str] | None]:
    """Each part's allowed imports, from its docstring (a package's ``__init__``, else the module)."""
    found: dict[str, set[str] | None] = {}
    for name, module in modules.items():
        if part_of(name) == name:
            found[name] = declared_imports(ast.get_docstring(ast.parse(module.path.read_text(encoding="utf-8"))) or "")
    return found


def test_every_part_says_what_it_may_import():
    modules = find_modules(SOURCES)
    missing = sorted(
        name for name, allowed in declarations(modules).items() if allowed is None and name not in UNDECLARED
    )
    assert missing == [], f"parts whose docstring has no 'May import:' sentence: {missing}"


def test_each_part_imports_only_what_its_docstring_allows():
    """For every part (subpackage or top-level module): its modules import modules of the part
    itself, the parts its docstring names, the root and the envs; never anything else."""
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    allowed = declarations(modules)
    wrong = []
    for name, edges in graph.items():
        part = part_of(name)
        permitted = allowed.get(part) or set()
        if part in UNDECLARED or "*" in permitted:
            continue
        for edge in edges:
            target = part_of(edge.target)
            if target in (part, *ALWAYS) or target in permitted or (name, edge.target) in PLUGIN_EDGES:
                continue
            wrong.append(f"{name} -> {edge.target} ({edge.where()})")
    assert wrong == [], "imports that the importing part's docstring does not allow:\n" + "\n".join(wrong)


def test_the_only_string_import_is_the_backend_plugin_edge():
    modules, graph = import_graph(SOURCES, _aliases(), _lazy())
    strings = {(name, edge.target) for name, edges in graph.items() for edge in edges if edge.string}
    assert strings == PLUGIN_EDGES, f"string imports besides the backend hook's: {sorted(strings - PLUGIN_EDGES)}"


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
import recurrent_rl.config, recurrent_rl.config.train, recurrent_rl.runs.config
assert recurrent_rl.runs.config is recurrent_rl.config.train  # 0.1.0's path of the training config
assert recurrent_rl.config.TrainConfig is recurrent_rl.config.train.TrainConfig  # the package holds its names
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


def test_rules_a_string_naming_a_module_is_an_import_but_not_in_lazy_tables_or_docstrings(tmp_path):
    files = {
        "__init__.py": '"""The root: pkg.b in a docstring is no import."""\n_PUBLIC = {"Thing": "pkg.b"}\n',
        "a.py": 'import importlib\n\ndef load():\n    return importlib.import_module("pkg.b")\n',
        "b.py": '"""pkg.a, named in a docstring."""\nNAME = "pkg"  # the package itself: a name, not an import\n',
    }
    _, graph = import_graph(_write(tmp_path, files), {}, root="pkg")
    assert [(e.target, e.string) for e in graph["pkg.a"]] == [("pkg.b", True)]
    assert graph["pkg.b"] == [] and graph["pkg"] == []


def test_rules_the_docstring_sentence_says_what_a_part_may_import():
    assert declared_imports(
        "Holds x.\n\nMay import: ``nets``, ``io`` (files) and the leaf modules. Never ``runs``."
    ) == {
        "recurrent_rl.nets",
        "recurrent_rl.io",
        *(f"recurrent_rl.{leaf}" for leaf in LEAVES),
    }
    assert declared_imports("May import: everything.") == {"*"}
    assert declared_imports("A leaf module. May import: nothing of the package (torch).") == set()
    assert declared_imports("No such sentence.") is None
