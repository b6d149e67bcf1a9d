"""The weights-only model format, by its public path: ``save_safe`` and ``load_safe``.

The format lives in :mod:`recurrent_rl.io.safe` (writing, reading, every check) and loading in
:func:`recurrent_rl.algorithms.load_safe`; this module gives them (and the format's other names)
under the path that the documentation and scripts use, ``recurrent_rl.export.safe``.
"""

from __future__ import annotations

from recurrent_rl.algorithms import load_safe
from recurrent_rl.io.optimizer import optimizer_from_safe, optimizer_to_safe
from recurrent_rl.io.safe import (
    CONFIG,
    DEFAULT_NAME,
    FORMAT,
    FORMAT_VERSION,
    HYPERPARAMETERS,
    OPTIMIZER,
    SCHEDULES,
    WEIGHTS,
    check_safe_copy,
    complete_pending_config,
    has_safe_copy,
    load_safe_vecnormalize,
    optimizer_path,
    read_safe_config,
    read_safe_vecnormalize,
    safe_paths,
    save_safe,
)
from recurrent_rl.io.values import (
    ALLOWED_MODULES,
    SafeFormatError,
    from_json,
    resolve_class,
    to_json,
    vecnormalize_to_json,
)

__all__ = [
    "ALLOWED_MODULES",
    "CONFIG",
    "DEFAULT_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "HYPERPARAMETERS",
    "OPTIMIZER",
    "SCHEDULES",
    "WEIGHTS",
    "SafeFormatError",
    "check_safe_copy",
    "complete_pending_config",
    "from_json",
    "has_safe_copy",
    "load_safe",
    "load_safe_vecnormalize",
    "optimizer_from_safe",
    "optimizer_path",
    "optimizer_to_safe",
    "read_safe_config",
    "read_safe_vecnormalize",
    "resolve_class",
    "safe_paths",
    "save_safe",
    "to_json",
    "vecnormalize_to_json",
]
