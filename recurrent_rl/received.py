"""Data read from files is data: the limits and checks every loader applies before using it.

A file may come from a stranger (a run folder, a weights-only model, an ONNX graph, a config, a
study). Whatever is read from it (text, env ids, sizes, paths, class names) is checked here
before anything is imported, allocated or opened on its word:

- :func:`read_text` refuses a file larger than its limit before reading it whole;
- :func:`load_yaml` refuses YAML whose aliases expand beyond a node budget (a "billion laughs"
  file is a few hundred bytes that expand to billions of values once copied or dumped), or that
  nests too deep, before constructing a value;
- :func:`env_id_from_file` accepts only an env id that is registered already: Gymnasium imports
  the module of an id written ``module:Env-v0``, and importing a module runs its code;
- :func:`path_inside` keeps a path named in a file inside the file's folder;
- :func:`shorten` cuts what an error message echoes from a file;
- :func:`load_json` parses JSON that nests too deep or holds ``NaN`` / ``Infinity`` into one
  error instead of a ``RecursionError`` or a silent non-finite number;
- :func:`check_memory` refuses a size read from a file when what it would allocate is more than
  this process can get (:func:`memory_budget`: the memory available, within ``RLIMIT_AS``);
- :func:`integer`, :func:`number`, :func:`string`, :func:`boolean`, :func:`mapping` and
  :func:`sequence` check one field of a parsed file and name it in their error.

Every refusal is a :class:`ReceivedFileError` (a :class:`~recurrent_rl.errors.UserInputError`,
so the command line prints one line) that names the file and the field.

A leaf module. May import: ``errors`` and ``envs`` (the ``pomdp/`` registry, inside
:func:`env_id_from_file`); the standard library, PyYAML, Gymnasium.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from recurrent_rl.errors import UserInputError

MAX_TEXT_BYTES = 4 << 20  # a config, model.json, a study's search space: kilobytes in practice
MAX_YAML_NODES = 100_000  # values after expanding every alias; a resolved config has a few hundred
MAX_YAML_DEPTH = 64  # nesting; a config nests three levels
MAX_ECHO = 120  # characters of a value from a file shown in an error message
MAX_ENV_ID = 200
MAX_LIST = 1 << 16  # entries of a list in a file's structure (spaces' bounds are counted apart)


class ReceivedFileError(UserInputError):
    """A file (or a field in it) that the package refuses to use: too large, malformed, or naming
    code, sizes or paths it does not accept."""


def shorten(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` and the full length when cut), on one line,
    for messages.

    A list or mapping is shown through :mod:`reprlib` (its first items, a few levels deep): its
    full ``repr`` may be far larger than the file it came from (one long string repeated by YAML
    aliases), so it is never built; its length is then not shown.
    """
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        try:
            text = value if isinstance(value, str) and not value else repr(value)
        except ValueError:  # an int of more digits than Python converts to text (sys.get_int_max_str_digits)
            assert isinstance(value, int)
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    else:
        text = " ".join(_BOUNDED.repr(value).split())
        return text if len(text) <= limit else f"{text[: max(limit - 3, 1)]}..."
    if "\n" in text:  # an object whose repr spans lines: one line in a message
        text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 3, 1)]}... ({len(text)} characters)"


class _Bounded(reprlib.Repr):
    """:mod:`reprlib`'s bounded repr, with a mapping's keys in their order (reprlib sorts them)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = itertools.islice(x.items(), self.maxdict)
        pieces = [f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}" for key, value in items]
        return "{" + ", ".join(pieces) + (", ..." if len(x) > self.maxdict else "") + "}"


_BOUNDED = _Bounded()  # a few items of each container, a few levels deep: bounded whatever the value
_BOUNDED.maxlevel, _BOUNDED.maxlist, _BOUNDED.maxtuple, _BOUNDED.maxdict, _BOUNDED.maxset = 3, 8, 8, 8, 8
_BOUNDED.maxstring, _BOUNDED.maxother, _BOUNDED.maxlong = MAX_ECHO, MAX_ECHO, MAX_ECHO


def cut(name: str, limit: int = 60) -> str:
    """A name read from a file (a key, a tensor's name) as it is written, cut to ``limit`` characters,
    for the field part of a message (``model.json (optimizer.param_groups[0].betas)``)."""
    if not name.isprintable():  # a newline or a control character: written as an escape, on one line
        name = name.encode("unicode_escape").decode("ascii")
    return name if len(name) <= limit else f"{name[: limit - 3]}..."


def read_text(path: str | Path, what: str = "file", limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path``, refused before reading when it is larger than ``limit`` bytes.

    :param what: what the file is, for the message (``"config file"``, ``"model.json"``)
    :raises ReceivedFileError: too large or not UTF-8; ``OSError`` (missing, a folder, unreadable)
        is left to the caller, which knows what to suggest
    """
    path = Path(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > limit:
            raise ReceivedFileError(
                f"{what} {path} is {size:,} bytes, more than the {limit:,} this package reads: it is not a file it "
                "wrote (or it was altered); refused before reading it"
            )
        data = file.read(limit + 1)
    if len(data) > limit:  # grew while being read (a pipe, a file still being written)
        raise ReceivedFileError(f"{what} {path} is larger than the {limit:,} bytes this package reads: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ReceivedFileError(f"{what} {path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from None


def load_yaml(text: str, source: str, max_nodes: int = MAX_YAML_NODES, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """``yaml.safe_load(text)``, refused when its aliases expand to more than ``max_nodes`` values,
    it nests deeper than ``max_depth``, or an alias refers to itself.

    The document is composed first (aliases stay references, so this costs the size of the text),
    its expanded size is counted, and only then is the value constructed.

    :raises yaml.YAMLError: malformed YAML (the caller says where)
    :raises ReceivedFileError: too many values, too deep, or self-referring
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ReceivedFileError(f"{source}: the YAML nests too deep (more than {max_depth} levels)") from None
        if node is None:
            return None
        _count_nodes(node, source, max_nodes, max_depth)
        try:
            return loader.construct_document(node)
        except (ValueError, TypeError, OverflowError) as error:  # an int of 5,000 digits, a date 2001-02-30
            raise ReceivedFileError(
                f"{source}: the YAML holds a value that cannot be read ({shorten(str(error))})"
            ) from None
    finally:
        loader.dispose()


def _count_nodes(root: yaml.Node, source: str, max_nodes: int, max_depth: int) -> int:
    """The number of values of ``root`` with every alias expanded (each use counted), iteratively."""
    sizes: dict[int, int] = {}  # id(node) -> expanded size, once known
    open_nodes: set[int] = set()  # on the current path: an alias back to one of them is a cycle
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        children = _children(node)
        if not expanded:
            if key in sizes:
                continue
            if key in open_nodes:
                raise ReceivedFileError(f"{source}: a YAML alias refers to a value that contains it: refused")
            if depth > max_depth:
                raise ReceivedFileError(f"{source}: the YAML nests too deep (more than {max_depth} levels)")
            open_nodes.add(key)
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(key)
        total = 1 + sum(sizes[id(child)] for child in children)
        if total > max_nodes:
            raise ReceivedFileError(
                f"{source}: the YAML expands to more than {max_nodes:,} values (aliases repeated inside aliases): "
                "refused before building it"
            )
        sizes[key] = total
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def env_id_from_file(env_id: Any, where: str, trusted: bool = False) -> str:
    """``env_id`` read from a file, accepted only if it is a registered Gymnasium id.

    An unregistered id is never passed to ``gymnasium.make``: for ``module:Env-v0`` it would
    import ``module`` (a file beside the model, or any installed module), which runs its code.

    :param where: the file and field, for the message (``"model.onnx (metadata env_id)"``)
    :param trusted: the user typed this id themselves (command line or Python), so a ``module:``
        prefix is theirs to ask for: only the type and length are checked
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise ReceivedFileError(f"{where}: the env id must be a non-empty string, got {shorten(env_id)}")
    if len(env_id) > MAX_ENV_ID:
        raise ReceivedFileError(f"{where}: the env id is {len(env_id)} characters long: {shorten(env_id)}")
    if trusted:
        return env_id
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    if env_id in gym.registry:
        return env_id
    module, colon, _ = env_id.partition(":")
    if colon:
        raise ReceivedFileError(
            f"{where} names the env {shorten(env_id)}, whose module {shorten(module)} Gymnasium would import, "
            "running its code: a module named in a file is never imported. If you trust it, name the env yourself "
            "(--env on the command line)"
        )
    raise ReceivedFileError(
        f"{where} names the env {shorten(env_id)}, which is not registered here: give the env yourself (--env ID)"
    )


def path_inside(folder: str | Path, name: Any, where: str) -> Path:
    """``folder / name`` for a relative path ``name`` read from a file in ``folder``, refused when it
    is absolute or leads outside ``folder`` (``..``, or a link pointing out)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ReceivedFileError(f"{where}: expected a file name, got {shorten(name)}")
    if Path(name).is_absolute():
        raise ReceivedFileError(
            f"{where} names the absolute path {shorten(name)}: a file may only name files inside its own folder"
        )
    base = Path(folder).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise ReceivedFileError(f"{where} names {shorten(name)}, which leads outside its folder {folder}: refused")
    return target


# --- JSON -------------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (the package writes finite numbers only)")


def load_json(text: str, source: str) -> Any:
    """``json.loads(text)``; malformed JSON, ``NaN`` / ``Infinity`` and nesting deeper than the
    interpreter's recursion limit are one :class:`ReceivedFileError` naming ``source``."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ReceivedFileError(f"{source}: the JSON nests too deep to be a file this package wrote") from None
    except ValueError as error:  # JSONDecodeError, NaN, an integer of more than 4300 digits
        raise ReceivedFileError(
            f"{source} is not valid JSON (damaged or altered): {shorten(str(error), 200)}"
        ) from None


# --- memory ------------------------------------------------------------------------------------------


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                name, _, value = line.partition(":")
                if name == key:
                    return int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_budget() -> int:
    """Bytes this process can still allocate: the memory available on the machine (``MemAvailable``;
    the physical memory where ``/proc`` is missing), and no more than its address-space limit
    (``RLIMIT_AS``) leaves above what it maps already."""
    available = _meminfo("MemAvailable")
    if available is None:
        try:
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            available = 1 << 62  # no way to tell (Windows): the address-space limit alone
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm", encoding="ascii") as file:
                mapped = int(file.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            available = min(available, soft - mapped)
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return max(int(available), 0)


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("kiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} bytes"


def check_memory(nbytes: int, what: str, where: str, budget: int | None = None) -> None:
    """Refuse ``what`` (sizes read from ``where``) when the ``nbytes`` it would allocate exceed the
    :func:`memory_budget` (or ``budget``): said before anything is allocated."""
    budget = memory_budget() if budget is None else budget
    if nbytes > budget:
        raise ReceivedFileError(
            f"{where}: {what} would take about {_bytes(nbytes)}, more than the {_bytes(budget)} this process can "
            "allocate: refused before allocating it (the file asks for sizes its weights do not hold, or the "
            "model is too large for this machine)"
        )


# --- one field of a parsed file ----------------------------------------------------------------------


def _at(where: str, field: str) -> str:
    return f"{where} ({field})" if field else where


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low:,} to {high:,}"
    return f"at least {low:,}" if low is not None else f"at most {high:,}"


def integer(value: Any, where: str, field: str = "", low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) within [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReceivedFileError(f"{_at(where, field)} must be an integer, got {shorten(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ReceivedFileError(f"{_at(where, field)} must be {_range(low, high)}, got {shorten(value)}")
    return value


def number(value: Any, where: str, field: str = "", low: float | None = None, high: float | None = None) -> float:
    """``value`` as a float if it is a finite ``int`` or ``float`` (not a bool) within [``low``, ``high``]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReceivedFileError(f"{_at(where, field)} must be a number, got {shorten(value)}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise ReceivedFileError(f"{_at(where, field)} must be a finite number, got {shorten(value)}")
    if (low is not None and result < low) or (high is not None and result > high):
        raise ReceivedFileError(f"{_at(where, field)} must be {_range(low, high)}, got {shorten(value)}")
    return result


def string(value: Any, where: str, field: str = "", choices: Iterable[str] | None = None, limit: int = 1000) -> str:
    """``value`` if it is a string (at most ``limit`` characters; one of ``choices`` when given)."""
    if not isinstance(value, str):
        raise ReceivedFileError(f"{_at(where, field)} must be a string, got {shorten(value)}")
    if len(value) > limit:
        raise ReceivedFileError(
            f"{_at(where, field)} is {len(value):,} characters long, more than the {limit:,} accepted: {shorten(value)}"
        )
    if choices is not None:
        options = list(choices)
        if value not in options:
            raise ReceivedFileError(f"{_at(where, field)} must be one of {shorten(options, 300)}, got {shorten(value)}")
    return value


def boolean(value: Any, where: str, field: str = "") -> bool:
    """``value`` if it is ``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ReceivedFileError(f"{_at(where, field)} must be true or false, got {shorten(value)}")
    return value


def mapping(
    value: Any, where: str, field: str = "", required: Iterable[str] = (), optional: Iterable[str] | None = ()
) -> dict[str, Any]:
    """``value`` if it is a mapping with string keys holding every ``required`` key and no key outside
    ``required`` and ``optional`` (``optional=None``: any other key)."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ReceivedFileError(f"{_at(where, field)} must be a mapping of names, got {shorten(value)}")
    required = list(required)
    missing = [key for key in required if key not in value]
    if missing:
        raise ReceivedFileError(f"{_at(where, field)} lacks {', '.join(missing)}")
    if optional is not None:
        allowed = {*required, *optional}
        unknown = [key for key in value if key not in allowed]
        if unknown:
            raise ReceivedFileError(
                f"{_at(where, field)} has the unknown key {shorten(unknown[0])}; "
                f"expected {shorten(sorted(allowed), 300)}"
            )
    return value


def sequence(value: Any, where: str, field: str = "", limit: int = MAX_LIST) -> list[Any]:
    """``value`` if it is a list of at most ``limit`` entries."""
    if not isinstance(value, list):
        raise ReceivedFileError(f"{_at(where, field)} must be a list, got {shorten(value)}")
    if len(value) > limit:
        raise ReceivedFileError(f"{_at(where, field)} has {len(value):,} entries, more than the {limit:,} accepted")
    return value
