"""Parameter validation shared by the wrappers and tasks.

Every failure is a ``ValueError`` that names the parameter, its valid range and the bad value,
so a typo in a config file points straight at the field to fix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[low, high]`` (``high=None``: no upper bound)."""
    valid = f"[{low}, {high}]" if high is not None else f">= {low}"
    # bool is an int subclass, but True as a corridor length is always a mistake
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer {valid}, got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {valid}, got {value}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float = math.inf) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number in ``[low, high]``."""
    valid = f"[{low}, {high}]" if math.isfinite(high) else f">= {low}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number in {valid}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a real number in {valid}, got {value}")
    return value


def discrete_action(value: Any, n: int) -> int:
    """The integer action in ``[0, n)`` held by ``value`` (a Python or NumPy integer, or a size-1 array)."""
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"action must be one integer in [0, {n - 1}], got {value!r}")
    action = int(arr.reshape(-1)[0])
    if not 0 <= action < n:
        raise ValueError(f"action must be one integer in [0, {n - 1}], got {action}")
    return action
