"""Saving a training model into its run folder: final and best models, and checkpoints.

Each file is written as :mod:`recurrent_rl.io.run_folder` writes files (a temporary name renamed
into place; a checkpoint is a whole folder renamed into place), with the model's weights-only
copy beside its zip (:mod:`recurrent_rl.io.safe`), so ``evaluate``, ``export`` and ``--resume``
never need to unpickle it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from recurrent_rl.io.run_folder import (
    CHECKPOINT_STATE,
    MODEL,
    VECNORMALIZE,
    atomic_open,
    atomic_path,
    update_run_info,
    write_checkpoint,
)

REPLAY_BUFFER = "replay_buffer.npz"  # a RecurrentSAC checkpoint's replay buffer (plain arrays, no pickle)


def save_model(model: Any, path: str | Path) -> None:
    """``model.save`` atomically (SB3 writes the zip in place otherwise), and its safe copy beside it.

    The safe copy (``<name>.safetensors`` and ``<name>.json``: weights, config, spaces and the
    VecNormalize statistics; see :mod:`recurrent_rl.io.safe`) opens without unpickling.
    """
    with atomic_open(path, "wb") as file:
        model.save(file)
    save_safe_copy(model, Path(path).with_suffix(""))


def save_safe_copy(model: Any, prefix: str | Path, optimizer: bool = False) -> None:
    """Write the weights-only copy ``<prefix>.safetensors`` + ``<prefix>.json`` (with ``optimizer``:
    also ``<prefix>.optimizer.safetensors``, which ``--resume`` reads); a model that the format
    cannot describe (a policy option naming a class outside its allow-list) gets a warning and
    keeps its zip only."""
    import warnings

    from recurrent_rl.io.safe import SafeFormatError, save_safe

    try:
        save_safe(model, prefix, optimizer=optimizer)
    except SafeFormatError as error:
        warnings.warn(f"no safe copy of the model at {prefix}: {error}", stacklevel=2)


def save_vecnormalize(vec_normalize: Any, path: str | Path) -> None:
    """``VecNormalize.save`` atomically."""
    with atomic_path(path) as tmp:
        vec_normalize.save(str(tmp))


def write_model_checkpoint(run_dir: str | Path, model: Any, keep: int = 0) -> Path:
    """Checkpoint a training model: ``checkpoints/step_<N>/`` with model.zip, vecnormalize.pkl (if
    used), a RecurrentSAC's replay buffer (``replay_buffer.npz``) and state.json (written by
    :func:`write_checkpoint`), and the step in run.json.

    :param model: a :class:`~recurrent_rl.RecurrentPPO` (anything with SB3's ``save``,
        ``get_vec_normalize_env`` and ``num_timesteps``)
    """
    run_dir = Path(run_dir)

    def write(folder: Path) -> None:
        with open(folder / MODEL, "wb") as file:  # closed here when the disk refuses it (SB3 leaves it open)
            model.save(file)
        save_safe_copy(model, (folder / MODEL).with_suffix(""), optimizer=True)  # what --resume reads
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            vec_normalize.save(str(folder / VECNORMALIZE))
        if hasattr(model, "save_replay_arrays"):  # RecurrentSAC: --resume continues with the same buffer
            model.save_replay_arrays(folder / REPLAY_BUFFER)
        (folder / CHECKPOINT_STATE).write_text(
            json.dumps({"num_timesteps": int(model.num_timesteps), "time": time.time()}) + "\n", encoding="utf-8"
        )

    path = write_checkpoint(run_dir, int(model.num_timesteps), write, keep)
    update_run_info(run_dir, num_timesteps=int(model.num_timesteps), last_checkpoint=str(path.relative_to(run_dir)))
    return path
