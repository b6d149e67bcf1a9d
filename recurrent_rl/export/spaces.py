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

SPACE_TYPES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict")
# dtypes a Box may have in a file: every NumPy number type ONNX and torch know
BOX_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


class SpaceFormatError(UserInputError):
    """A space in a file that cannot be rebuilt (a damaged or foreign file)."""


def _bound(value: Any) -> Any:
    if isinstance(value, list):
        return [_bound(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _unbound(value: Any) -> Any:
    if isinstance(value, list):
        return [_unbound(v) for v in value]
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceFormatError(f"a Box bound must be a number, 'inf' or '-inf', got {value!r}")
    return value


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
    """The space that :func:`space_to_json` described; :class:`SpaceFormatError` for anything else."""
    try:
        return _space_from_json(data)
    except SpaceFormatError as error:
        raise SpaceFormatError(f"{where}: {error}") from None
    except (KeyError, TypeError, ValueError, AssertionError) as error:
        raise SpaceFormatError(
            f"{where}: a space entry cannot be read ({type(error).__name__}: {error}): {data!r:.200}"
        ) from None


def _space_from_json(data: Any) -> spaces.Space:
    if not isinstance(data, dict) or data.get("type") not in SPACE_TYPES:
        raise SpaceFormatError(
            f"not a space description (its 'type' must be one of {list(SPACE_TYPES)}): {data!r:.200}"
        )
    kind = data["type"]
    if kind == "Box":
        dtype = data["dtype"]
        if dtype not in BOX_DTYPES:
            raise SpaceFormatError(f"Box dtype {dtype!r} is not one of {list(BOX_DTYPES)}")
        shape = tuple(int(s) for s in data["shape"])
        low = np.asarray(_unbound(data["low"]), dtype=dtype)
        high = np.asarray(_unbound(data["high"]), dtype=dtype)
        if low.shape != shape or high.shape != shape:
            raise SpaceFormatError(f"Box bounds of shape {low.shape} / {high.shape} for the shape {shape}")
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "MultiDiscrete":
        dtype = data.get("dtype", "int64")
        if dtype not in BOX_DTYPES:
            raise SpaceFormatError(f"MultiDiscrete dtype {dtype!r} is not one of {list(BOX_DTYPES)}")
        return spaces.MultiDiscrete(
            np.asarray(data["nvec"], dtype=np.int64),
            dtype=dtype,
            start=np.asarray(data.get("start", 0), dtype=np.int64),
        )
    if kind == "MultiBinary":
        n = data["n"]
        return spaces.MultiBinary(int(n) if isinstance(n, int) else [int(v) for v in n])
    entries = data["spaces"]
    if not isinstance(entries, dict):
        raise SpaceFormatError("a Dict space needs a 'spaces' mapping")
    subs = {}
    for key, sub in entries.items():
        if isinstance(sub, dict) and sub.get("type") == "Dict":
            raise SpaceFormatError(f"Dict entry {key!r} is itself a Dict: nested Dict spaces are not supported")
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
