"""Typed, frozen, validated dataclasses: the config machinery of both sides (RL and supervised).

A :class:`Section` is a frozen dataclass whose fields are converted and checked after every
construction (from a mapping, by ``replace``, or directly): type (int, float, bool, str,
``Literal`` choices, ``X | None``, tuples, mappings, nested sections) and numeric range from the
field's :func:`setting`. Errors are :class:`ConfigError` naming the dotted key, the expected type
and the valid choices, with the closest valid name for a typo.

Config files and ``--set KEY=VALUE`` overrides are read, and resolved configs written, by the
functions at the end (:func:`read_config_file`, :func:`apply_overrides`, :func:`config_to_yaml`,
:func:`save_config`), whatever the root section: :class:`recurrent_rl.config.train.TrainConfig`
(``recurrent-rl train``) or :class:`recurrent_rl.supervised.config.PretrainConfig`
(``recurrent-rl pretrain``).

Files are read through :mod:`recurrent_rl.received`: a config file larger than
:data:`~recurrent_rl.received.MAX_TEXT_BYTES` is refused before it is read, YAML whose aliases
expand beyond :data:`~recurrent_rl.received.MAX_YAML_NODES` values before it is built, and every
value an error message echoes is cut (:func:`~recurrent_rl.received.shorten`).

A leaf of the package: stdlib, PyYAML, :mod:`recurrent_rl.errors` and :mod:`recurrent_rl.received`
only (torch is imported inside :func:`activation_class`), so the supervised side builds on it too.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from recurrent_rl.errors import UserInputError
from recurrent_rl.received import ReceivedFileError, load_yaml, read_text, shorten

MAX_LISTED = 10  # unknown keys named in one message


def clip(text: str, limit: int = 160) -> str:
    """``text`` (not a repr: for names and parser messages) cut to ``limit`` characters, with the full length."""
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


class ConfigError(UserInputError):
    """A config value is missing, unknown, of the wrong type or out of range.

    ``key`` is the dotted path of the value (``policy_kwargs.hidden_size``), ``source`` the file
    or preset it came from. Both are filled in on the way up (:meth:`under`, :meth:`with_source`).
    """

    def __init__(self, message: str, key: str | None = None, source: str | None = None):
        self._message, self.key, self.source = message, key, source
        super().__init__(str(self))

    @property
    def message(self) -> str:
        """What is wrong, without the key and the source."""
        return self._message

    def under(self, prefix: str) -> ConfigError:
        """The same error for a key nested under ``prefix``."""
        return self._copy(key=f"{prefix}.{self.key}" if self.key else prefix)

    def with_source(self, source: str) -> ConfigError:
        return self._copy(source=self.source or source)

    def _copy(self, **changes: Any) -> ConfigError:
        return _rebuild(type(self), {**self.__dict__, **changes})

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (to worker processes) with key and source
        return _rebuild, (type(self), dict(self.__dict__))

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        key = f"config key '{self.key}': " if self.key else ""
        return f"{where}{key}{self.message}"


def _rebuild(cls: type[ConfigError], attributes: dict[str, Any]) -> ConfigError:
    error = cls.__new__(cls)
    error.__dict__.update(attributes)
    error.args = (str(error),)
    return error


class MissingKeyError(ConfigError):
    """A required key is not set."""

    def __init__(self, key: str, expected: str, example: str | None = None, source: str | None = None):
        self.expected, self.example = expected, example
        super().__init__("", key, source)

    @property
    def message(self) -> str:
        example = f", e.g. {self.example}" if self.example else ""
        return f"missing required key: {self.key} is required ({self.expected}{example})"


class UnknownKeyError(ConfigError):
    """Keys that a section does not have; ``key`` is the section's dotted path (None: the top level)."""

    def __init__(
        self,
        unknown: Iterable[str],
        valid: Iterable[str],
        key: str | None = None,
        noun: str = "config key",
        source: str | None = None,
    ):
        self.unknown, self.valid, self.noun = [clip(str(k), 60) for k in unknown], list(valid), noun
        super().__init__("", key, source)

    @property
    def message(self) -> str:
        prefix = f"{self.key}." if self.key else ""
        where = f" in {self.key}" if self.key else ""
        close = {k: _suggest(k, self.valid) for k in self.unknown[:MAX_LISTED]}
        hints = [f"'{c}'" if len(close) == 1 else f"'{c}' for '{k}'" for k, c in close.items() if c]
        hint = f" Did you mean {', '.join(hints)}?" if hints else ""
        unknown = [prefix + k for k in self.unknown[:MAX_LISTED]]
        more = f" and {len(self.unknown) - MAX_LISTED} more" if len(self.unknown) > MAX_LISTED else ""
        return f"unknown {self.noun}(s) {unknown}{more}; valid keys{where}: {self.valid}.{hint}"

    def __str__(self) -> str:  # the message names the keys itself
        return f"{self.source}: {self.message}" if self.source else self.message


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    factory: Any = None,
    example: str | None = None,
) -> Any:
    """A dataclass field with its help text and numeric range (``low <= x <= high``, ``above < x < below``).

    ``example`` is shown when a required key is missing.
    """
    metadata = {"help": help, "low": low, "high": high, "above": above, "below": below, "example": example}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class Section:
    """Base of the config dataclasses: converts and checks every field after construction."""

    # what this section's keys are called in the message about an unknown one
    key_noun = "config key"

    # A non-mapping value that stands for the whole section (``normalize: true``), if any.
    @classmethod
    def from_shorthand(cls, value: Any) -> dict[str, Any] | None:
        return None

    @classmethod
    def complete(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The keys a mapping given for this section implies beside the ones it names (override):
        what is left out takes the field's default unless the section says otherwise here
        (``normalize: {norm_reward: false}`` means VecNormalize on)."""
        return dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Any:
        if not isinstance(values, Mapping):
            expanded = cls.from_shorthand(values)
            if expanded is None:
                raise ConfigError(f"expected a mapping with keys {_keys(cls)}, got {_show(values)}")
            values = expanded
        else:
            values = cls.complete(values)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = [str(key) for key in values if key not in names]
        if unknown:
            raise UnknownKeyError(unknown, names, noun=cls.key_noun)
        missing = [f for f in dataclasses.fields(cls) if f.name not in values and _required(f)]  # type: ignore[arg-type]
        if missing:
            hints = _hints(cls)
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                if f.name in values:  # what was written wrong is reported before what was left out
                    try:
                        _check_range(_convert(values[f.name], hints[f.name], f.metadata), f.metadata)
                    except ConfigError as error:
                        raise error.under(f.name) from None
            f = missing[0]
            raise MissingKeyError(f.name, _describe(hints[f.name], f.metadata), f.metadata.get("example"))
        return cls(**values)

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            try:
                value = _convert(getattr(self, f.name), hints[f.name], f.metadata)
                _check_range(value, f.metadata)
            except ConfigError as error:
                raise error.under(f.name) from None
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Checks across fields (override)."""

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (validated like any other construction)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values (sections as mappings, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def describe_keys(root: type, effective: Mapping[str, Any] | None = None, label: str = "preset") -> list[str]:
    """One line per key of section ``root`` (dotted), with its type, default and help.

    :param effective: a config mapping (say, the preset a command uses when given none); where
        its value of a key differs from the default, the line shows it too, as ``<label> <value>``
    """
    lines: list[str] = []
    given = flat_values(root, effective) if effective is not None else {}

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            tp, key = hints[f.name], prefix + f.name
            if _is_section(tp):
                walk(tp, key + ".")
                continue
            default = "required" if _required(f) else f"default {_default_text(f)}"
            if key in given and (_required(f) or _plain(given[key]) != _plain(_default_value(f))):
                default += f"; {label} {_value_text(given[key])}"
            lines.append(f"{key} ({_describe(tp, f.metadata)}; {default}): {f.metadata.get('help', '')}")

    walk(root, "")
    return lines


def flat_values(root: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every key of section ``root`` (dotted) -> its value in ``values``, else its default.

    Not validated: for showing a config without building it (``recurrent-rl presets``, ``--help``).
    Shorthands are expanded (``normalize: true`` is ``normalize.enabled``); a required key that
    ``values`` leaves out is absent.
    """
    flat: dict[str, Any] = {}

    def walk(cls: type, values: Mapping[str, Any], prefix: str) -> None:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            tp, key = hints[f.name], prefix + f.name
            if _is_section(tp):
                inner = values.get(f.name, {})
                if not isinstance(inner, Mapping):
                    inner = tp.from_shorthand(inner) or {}
                elif f.name in values:
                    inner = tp.complete(inner)
                walk(tp, inner, key + ".")
            elif f.name in values:
                flat[key] = values[f.name]
            elif not _required(f):
                flat[key] = _default_value(f)

    walk(root, values, "")
    return flat


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_number(text: str) -> float | None:
    # PyYAML (YAML 1.1) reads 1e-3 and 1e5 as strings; the zoo writes them that way.
    text = text.strip().replace("_", "")
    return float(text) if _NUMBER.match(text) else None


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default_value(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"config key {f.name!r} has no default")


def _default_text(f: dataclasses.Field) -> str:
    return _value_text(_default_value(f))


def _value_text(value: Any) -> str:
    plain = _plain(value)
    return (
        "null" if plain is None else yaml.safe_dump(plain, default_flow_style=True).strip().removesuffix("...").strip()
    )


def _keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _show(value: Any) -> str:
    return f"{shorten(value)} ({type(value).__name__})"


def _suggest(word: str, choices: list[str]) -> str | None:
    """The closest choice to ``word`` (case-insensitive), if any is close."""
    if len(word) > 100:  # no name is that long; difflib's cost grows with the length
        return None
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _describe(tp: Any, metadata: Mapping[str, Any] | None = None) -> str:
    metadata = metadata or {}
    rng = _range_text(metadata)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [a for a in get_args(tp) if a is not type(None)]
        if parts == [float, str]:
            text = f"a number{rng} or lin_<number>"
        else:
            text = " or ".join(_describe(a, metadata) for a in parts)
        return text + (" or null" if type(None) in get_args(tp) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) if a is not None else "null" for a in get_args(tp))
    if tp is bool:
        return "true or false"
    if tp is int:
        return f"an integer{rng}"
    if tp is float:
        return f"a number{rng}"
    if tp is str:
        return "a string"
    if origin is tuple:
        return "a list of strings" if get_args(tp)[:1] == (str,) else "a list of integers"
    if origin is dict or tp is dict:
        return "a mapping"
    if _is_section(tp):
        return f"a mapping with keys {_keys(tp)}"
    return str(tp)


def _range_text(metadata: Mapping[str, Any]) -> str:
    low, high = metadata.get("low"), metadata.get("high")
    above, below = metadata.get("above"), metadata.get("below")
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None and below is not None:
        return f" in [{low}, {below})"
    if low is not None:
        return f" >= {low}"
    if above is not None:
        return f" > {above}"
    return ""


def _convert(value: Any, tp: Any, metadata: Mapping[str, Any]) -> Any:
    """``value`` as type ``tp``, or a :class:`ConfigError` naming what was expected."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, metadata)
            except ConfigError:
                continue
        raise ConfigError(f"expected {_describe(tp, metadata)}, got {_show(value)}")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        close = _suggest(value, [str(c) for c in choices]) if isinstance(value, str) else None
        hint = f" Did you mean '{close}'?" if close else ""
        raise ConfigError(f"expected {_describe(tp)}, got {_show(value)}.{hint}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = parse_number(value) if isinstance(value, str) else value
        if isinstance(number, float) and not isinstance(value, bool) and math.isfinite(number) and number.is_integer():
            return int(number)  # 1e5 or 100000.0
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and parse_number(value) is not None:
            return parse_number(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            (item,) = get_args(tp)[:1]
            converted = []
            for index, element in enumerate(value):
                try:
                    converted.append(_convert(element, item, {}))
                except ConfigError as error:
                    raise ConfigError(f"item {index}: {error.message}") from None
            return tuple(converted)
    elif origin is dict or tp is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif _is_section(tp):
        if isinstance(value, tp):
            return value
        return tp.from_dict(value)
    raise ConfigError(f"expected {_describe(tp, metadata)}, got {_show(value)}")


def _check_range(value: Any, metadata: Mapping[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = metadata.get("low"), metadata.get("high")
    above, below = metadata.get("above"), metadata.get("below")
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and not value > above)
        or (below is not None and not value < below)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        kind = "an integer" if isinstance(value, int) else "a number"
        raise ConfigError(f"expected {kind}{_range_text(metadata)}, got {shorten(value)}")


def set_path(values: dict[str, Any], parts: list[str], value: Any, cls: type, full_key: str) -> None:
    """Set ``values[a][b]...`` = value along the schema ``cls``, expanding shorthands on the way."""
    hints = _hints(cls)
    head = parts[0]
    if head not in hints:
        prefix = full_key[: len(full_key) - len(".".join(parts))].rstrip(".")
        raise UnknownKeyError(
            [head],
            [f.name for f in dataclasses.fields(cls)],
            key=prefix or None,
            noun=getattr(cls, "key_noun", "config key"),
        )
    if len(parts) == 1:
        values[head] = value
        return
    tp = hints[head]
    if tp == dict[str, Any]:  # env_kwargs.some_arg: free-form keys
        inner = values.get(head)
        values[head] = inner = dict(inner) if isinstance(inner, Mapping) else {}
        _set_free(inner, parts[1:], value)
        return
    if not _is_section(tp):
        raise ConfigError(f"'{clip(head)}' is not a section: set it with {clip(head)}=VALUE", key=full_key)
    inner = values.get(head, {})
    if not isinstance(inner, Mapping):
        expanded = tp.from_shorthand(inner)
        if expanded is None:
            raise ConfigError(f"'{head}' holds {_show(inner)}, not a mapping", key=full_key)
        inner = expanded
    values[head] = inner = dict(inner)
    set_path(inner, parts[1:], value, tp, full_key)


def _set_free(values: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = values.get(part)
        values[part] = child = dict(child) if isinstance(child, Mapping) else {}
        values = child
    values[parts[-1]] = value


def deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, mapping by mapping (a preset, then a config file on top)."""
    out = deep_copy(base)
    for key, value in top.items():
        inner = out.get(key)
        out[key] = merge(inner, value) if isinstance(value, Mapping) and isinstance(inner, Mapping) else value
    return out


# --- choices that the configs of both sides share ------------------------------------------------

# activation name in a config -> the torch.nn module it builds (policy heads, sequence-model input layers)
ACTIVATIONS: dict[str, str] = {
    "tanh": "Tanh",
    "relu": "ReLU",
    "elu": "ELU",
    "leaky_relu": "LeakyReLU",
    "gelu": "GELU",
    "silu": "SiLU",
}


def activation_class(name: str) -> Any:
    """The ``torch.nn`` module class of activation ``name`` (one of :data:`ACTIVATIONS`)."""
    from torch import nn

    if name not in ACTIVATIONS:
        raise ConfigError(f"expected one of {', '.join(repr(a) for a in ACTIVATIONS)}, got {shorten(name)}")
    return getattr(nn, ACTIVATIONS[name])


# --- files, overrides, YAML out: the same for every root section ---------------------------------


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """A YAML mapping, or a :class:`ConfigError` saying where the YAML is malformed (or a
    :class:`~recurrent_rl.received.ReceivedFileError` for aliases that expand too far)."""
    try:
        values = load_yaml(text, source)
    except yaml.YAMLError as error:
        raise ConfigError(f"malformed YAML{yaml_problem(error)}", source=source) from None
    return _mapping(values, source)


def yaml_problem(error: Exception, lines: bool = True) -> str:
    """Where and what a YAML parser error is, on one line: `` at line 3, column 1: expected ...``
    (``lines=False``: the column only, for one-line texts such as a ``--set`` value)."""
    mark = getattr(error, "problem_mark", None)
    where = ""
    if mark is not None:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if lines else f" at column {mark.column + 1}"
    problem = getattr(error, "problem", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{where}: {clip(' '.join(problem.split()))}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a config file: YAML (``.yaml``, ``.yml``, anything else), JSON (``.json``) or TOML (``.toml``)."""
    path = Path(path)
    try:
        text = read_text(path, "config file")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder: give the file, e.g. {path / 'config.yaml'}") from None
    except ReceivedFileError as error:
        if "UTF-8" in str(error):
            text = str(error).replace("save it as UTF-8", "give a YAML, JSON or TOML file saved as UTF-8")
            raise ConfigError(text) from None
        raise
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    if path.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}", source=str(path)
            ) from None
        except (ValueError, RecursionError) as error:  # an int of 5,000 digits; [[[[...]]]] nested past the stack
            raise ReceivedFileError(
                f"{path}: the JSON cannot be read ({shorten(str(error) or type(error).__name__)})"
            ) from None
        return _mapping(_shallow(values, str(path)), str(path))
    if path.suffix == ".toml":
        return _shallow(_read_toml(text, path), str(path))
    return parse_yaml(text, str(path))


def _shallow(values: Any, source: str) -> Any:
    """``values`` unless they nest deeper than YAML may (:data:`recurrent_rl.received.MAX_YAML_DEPTH`)."""
    from recurrent_rl.received import MAX_YAML_DEPTH

    stack = [(values, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise ReceivedFileError(f"{source}: the values nest too deep (more than {MAX_YAML_DEPTH} levels)")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return values


def _read_toml(text: str, path: Path) -> dict[str, Any]:
    if sys.version_info < (3, 11):  # tomllib is in the standard library from 3.11 on
        raise ConfigError(f"reading {path} needs Python 3.11 or later (tomllib); use a .yaml or .json file")
    else:
        import tomllib

        try:
            return _mapping(tomllib.loads(text), str(path))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"malformed TOML: {clip(str(error))}", source=str(path)) from None
        except (ValueError, RecursionError) as error:
            raise ReceivedFileError(
                f"{path}: the TOML cannot be read ({shorten(str(error) or type(error).__name__)})"
            ) from None


def _mapping(values: Any, source: str) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"expected a mapping of config keys, got {_show(values)}", source=source)
    return values


def apply_overrides(
    values: Mapping[str, Any], overrides: Iterable[str], root: type, example: str = "n_steps=64"
) -> dict[str, Any]:
    """``values`` with each ``KEY=VALUE`` applied along the schema ``root``; VALUE is read as YAML
    (``[64, 64]``, ``null``, ``1e-3``), KEY is dotted for nested keys and must exist."""
    result = deep_copy(values)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. {example}), got {shorten(override)}")
        try:
            value = load_yaml(text, f"--set {shorten(override)}") if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(
                f"cannot read the value of --set {shorten(override)} as YAML{yaml_problem(error, lines=False)}. "
                "Write VALUE as YAML, e.g. [64, 64], null or 1e-3, and put a string with : [ ] { } or "
                "# in quotes",
                key=key,
            ) from None
        set_path(result, key.split("."), value, root, key)
    return result


def config_to_yaml(config: Section, header: str = "") -> str:
    """The resolved config (every key, defaults included) as YAML, after ``header`` as comment lines."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def save_config(config: Section, path: str | Path, header: str = "") -> None:
    """Write the resolved config as YAML, atomically (see :func:`recurrent_rl.io.run_folder.atomic_write_text`)."""
    from recurrent_rl.io.run_folder import atomic_write_text

    atomic_write_text(Path(path), config_to_yaml(config, header))
