"""The package's algorithms by the name a saved model records, and loading a weights-only copy of any of them.

A weights-only copy's ``model.json`` names the algorithm that wrote it (``"algorithm":
"RecurrentPPO"``); :func:`load_safe` rebuilds that algorithm's model with its own ``load_safe``
(:func:`recurrent_rl.ppo.persistence.load_safe_model`), which checks every field before anything
is allocated. Only the names in :data:`ALGORITHMS` are accepted: a name read from a file never
imports anything.

The top of the algorithm floor. May import: ``ppo``, ``sac``, ``io`` and the leaf modules. Run folders,
evaluation, export and the command line load models through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch as th

from recurrent_rl.io.safe import SafeFormatError, read_safe_config, safe_paths
from recurrent_rl.ppo.algorithm import RecurrentPPO
from recurrent_rl.ppo.masking import MaskableRecurrentPPO
from recurrent_rl.received import shorten
from recurrent_rl.sac.algorithm import RecurrentSAC

ALGORITHMS: dict[str, Any] = {
    "RecurrentPPO": RecurrentPPO,
    "MaskableRecurrentPPO": MaskableRecurrentPPO,
    "RecurrentSAC": RecurrentSAC,
}


def load_safe(
    path: str | Path,
    env: Any = None,
    device: str | th.device = "auto",
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> Any:
    """The model of a weights-only copy, rebuilt by the algorithm its ``model.json`` names, without
    unpickling anything; see :func:`recurrent_rl.ppo.persistence.load_safe_model` for the arguments."""
    name = read_safe_config(path).get("algorithm")
    algorithm = ALGORITHMS.get(name) if isinstance(name, str) else None
    if algorithm is None:
        raise SafeFormatError(
            f"{safe_paths(path)[1]} (algorithm): {shorten(name)} is not an algorithm of this package "
            f"({', '.join(ALGORITHMS)})"
        )
    return algorithm.load_safe(path, env=env, device=device, custom_classes=custom_classes, optimizer=optimizer)


def check_resumable(path: str | Path, algorithm: str) -> None:
    """Every check that loading a checkpoint's weights-only copy with its optimizer state makes,
    without building the model (``--resume`` calls it before it writes anything); ``algorithm``:
    the name the run's config trains, which the copy must record."""
    from recurrent_rl.io.safe import check_safe_copy
    from recurrent_rl.sac.persistence import POLICIES

    recorded = read_safe_config(path).get("algorithm")
    if recorded != algorithm:
        raise SafeFormatError(
            f"{safe_paths(path)[1]} (algorithm) holds a {recorded}, but the run's config trains {algorithm}: the "
            "checkpoint is not this run's"
        )
    check_safe_copy(path, optimizer=True, policies=POLICIES if algorithm == "RecurrentSAC" else None)
