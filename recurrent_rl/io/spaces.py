"""Gymnasium spaces as plain JSON data, and back: what the ONNX metadata and the safe format store.

Only the spaces recurrent_rl supports (:data:`recurrent_rl.errors.SUPPORTED_OBSERVATION_SPACES`)::

    {"type": "Box", "low": [...], "high": [...], "shape": [3], "dtype": "float32"}
    {"type": "Discrete", "n": 5, "start": 0}
    {"type": "MultiDiscrete", "nvec": [3, 4], "start": [0, 0], "dtype": "int64"}
    {"type": "MultiBinary", "n": 4}            (n may be a list: MultiBinary([2, 3]))
    {"type": "Dict", "spaces": {"key": {...}, ...}}   (one level, in the space's key order)

Box bounds are written as nested lists of the bounds' own dtype, with ``"inf"`` / ``"-inf"`` for
infinite ones (JSON has no infinity); floats round-trip exactly (Python writes the shortest repr).
No torch: the ONNX runner reads these.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from recurrent_rl.errors import UserInputError
from recurrent_rl.received import shorten

SPACE_TYPES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict")
# dtypes a Box may have in a file: every NumPy number type ONNX and torch know
BOX_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
MAX_DIMS = 32  # dimensions of a shape (NumPy allows 64)
MAX_INT = (1 << 63) - 1  # a size or count stored as int64
MAX_ENTRIES = 1 << 16  # entries of a MultiDiscrete's nvec
MAX_KEYS = 1024  # entries of a Dict space


class SpaceFormatError(UserInputError):
    """A space in a file that cannot be rebuilt (a damaged or foreign file)."""


def _bound(value: Any) -> Any:
    if isinstance(value, list):
        return [_bound(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _unbound(value: Any, shape: tuple[int, ...], dtype: str, name: str) -> Any:
    """A Box bound read from a file: nested lists of exactly ``shape`` (checked level by level, so
    the nesting is never deeper than the shape says) of numbers, ``"inf"`` or ``"-inf"``."""
    if not shape:
        if value in ("inf", "-inf"):
            return float(value)
        if isinstance(value, bool) and dtype == "bool":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceFormatError(f"a Box bound must be a number, 'inf' or '-inf', got {shorten(value)}")
        return value
    if not isinstance(value, list) or len(value) != shape[0]:
        got = f"{len(value)} entries" if isinstance(value, list) else shorten(value)
        raise SpaceFormatError(f"the Box's {name} must be nested lists of the shape {list(shape)}, got {got}")
    return [_unbound(v, shape[1:], dtype, name) for v in value]


def _count(value: Any, what: str, low: int, high: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpaceFormatError(f"{what} must be an integer from {low} to {high:,}, got {shorten(value)}")
    return value


def _shape(value: Any, what: str, low: int = 0) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_DIMS:
        raise SpaceFormatError(f"{what} must be a list of at most {MAX_DIMS} integers, got {shorten(value)}")
    return tuple(_count(v, f"each entry of {what}", low) for v in value)


def _integers(value: Any, what: str, low: int) -> np.ndarray:
    """Nested lists of integers (at most MAX_DIMS deep and MAX_ENTRIES in all) as an int64 array."""
    shape: list[int] = []
    level = value
    while isinstance(level, list):
        shape.append(len(level))
        if len(shape) > MAX_DIMS or not level:
            break
        level = level[0]
    if not shape or len(shape) > MAX_DIMS or math.prod(shape) > MAX_ENTRIES:
        raise SpaceFormatError(f"{what} must be a non-empty list of integers, got {shorten(value)}")
    flat = _unbound(value, tuple(shape), "int64", what)
    array = np.asarray(flat, dtype=object).reshape(-1)
    for v in array:
        _count(v, f"each entry of {what}", low)
    return np.asarray(flat, dtype=np.int64)


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON-safe dict describing ``space`` (see the module docstring)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": _bound(space.low.tolist()),
            "high": _bound(space.high.tolist()),
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.MultiBinary):
        n = np.asarray(space.n)
        return {"type": "MultiBinary", "n": int(n) if n.ndim == 0 else [int(v) for v in n.ravel()]}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {str(key): space_to_json(sub) for key, sub in space.spaces.items()}}
    raise UserInputError(
        f"cannot describe the space {space} in a file: supported are {', '.join(SPACE_TYPES)} (a Dict of the others)"
    )


def space_from_json(data: Any, where: str = "the file") -> spaces.Space:
    """The space that :func:`space_to_json` described; :class:`SpaceFormatError` for anything else.

    Every field is checked before a space is built: types, dtypes, shapes (a Box's bounds must be
    nested lists of its shape, so a Box holds no more values than the file lists), and integer
    sizes within int64. Nothing is allocated beyond what the file lists.
    """
    try:
        return _space_from_json(data)
    except SpaceFormatError as error:
        raise SpaceFormatError(f"{where}: {error}") from None
    except (KeyError, TypeError, ValueError, AssertionError, OverflowError) as error:
        raise SpaceFormatError(
            f"{where}: a space entry cannot be read ({type(error).__name__}: {shorten(str(error), 200)}): "
            f"{shorten(data, 200)}"
        ) from None


def _fields(data: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [key for key in required if key not in data]
    unknown = [key for key in data if key not in (*required, *optional)]
    if missing or unknown:
        problem = f"lacks {missing}" if missing else f"has the unknown key {shorten(unknown[0])}"
        raise SpaceFormatError(f"the {data['type']} space {problem}: {shorten(data, 200)}")


def _dtype(value: Any, kind: str) -> str:
    if value not in BOX_DTYPES:
        raise SpaceFormatError(f"{kind} dtype {shorten(value)} is not one of {list(BOX_DTYPES)}")
    return str(value)


def _space_from_json(data: Any) -> spaces.Space:
    if not isinstance(data, dict) or data.get("type") not in SPACE_TYPES:
        raise SpaceFormatError(
            f"not a space description (its 'type' must be one of {list(SPACE_TYPES)}): {shorten(data, 200)}"
        )
    kind = data["type"]
    if kind == "Box":
        _fields(data, ("type", "low", "high", "shape", "dtype"))
        dtype = _dtype(data["dtype"], "Box")
        shape = _shape(data["shape"], "a Box's shape")
        low = np.asarray(_unbound(data["low"], shape, dtype, "low"), dtype=dtype)
        high = np.asarray(_unbound(data["high"], shape, dtype, "high"), dtype=dtype)
        return spaces.Box(low=low, high=high, shape=shape, dtype=np.dtype(dtype))
    if kind == "Discrete":
        _fields(data, ("type", "n"), ("start",))
        n = _count(data["n"], "a Discrete's n", 1)
        start = data.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int) or not -MAX_INT <= start <= MAX_INT - n:
            raise SpaceFormatError(f"a Discrete's start must be an integer within int64, got {shorten(start)}")
        return spaces.Discrete(n, start=start)
    if kind == "MultiDiscrete":
        _fields(data, ("type", "nvec"), ("start", "dtype"))
        dtype = _dtype(data.get("dtype", "int64"), "MultiDiscrete")
        nvec = _integers(data["nvec"], "a MultiDiscrete's nvec", 1)
        start = (
            _integers(data["start"], "a MultiDiscrete's start", -MAX_INT) if "start" in data else np.zeros_like(nvec)
        )
        if start.shape != nvec.shape:
            raise SpaceFormatError(f"a MultiDiscrete's start has the shape {start.shape}, its nvec {nvec.shape}")
        return spaces.MultiDiscrete(nvec, dtype=dtype, start=start)
    if kind == "MultiBinary":
        _fields(data, ("type", "n"))
        n = data["n"]
        if isinstance(n, list):
            return spaces.MultiBinary(list(_shape(n, "a MultiBinary's n", 1)))
        return spaces.MultiBinary(_count(n, "a MultiBinary's n", 1))
    _fields(data, ("type", "spaces"))
    entries = data["spaces"]
    if not isinstance(entries, dict) or not entries or len(entries) > MAX_KEYS:
        raise SpaceFormatError(f"a Dict space needs a 'spaces' mapping of 1 to {MAX_KEYS} entries")
    subs = {}
    for key, sub in entries.items():
        if isinstance(sub, dict) and sub.get("type") == "Dict":
            raise SpaceFormatError(f"Dict entry {shorten(key)} is itself a Dict: nested Dict spaces are not supported")
        subs[key] = _space_from_json(sub)
    # gymnasium sorts the keys of a plain dict; keep the file's order, which is the space's own
    from collections import OrderedDict

    return spaces.Dict(OrderedDict(subs))


def describe(space: spaces.Space) -> str:
    """A short text of a space for messages."""
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{key}: {describe(sub)}" for key, sub in space.spaces.items()) + ")"
    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {np.dtype(space.dtype).name}"
    return str(space)
