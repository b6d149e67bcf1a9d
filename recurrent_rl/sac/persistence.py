"""RecurrentSAC without pickles: rebuilt from its weights-only copy, and its replay buffer as plain arrays.

- :func:`load_safe_sac` is what ``RecurrentSAC.load_safe`` runs: the copy is checked as a
  RecurrentPPO's is (:func:`recurrent_rl.io.safe.check_safe_model`: schema, sizes against the
  weights file and this process's memory, finite weights), then the model is built as SB3's
  ``load`` builds it (construct without building, set what was saved, build) and the policy's
  ``state_dict`` (actor, critic and target critic, memories included) is loaded into it. With
  ``optimizer=True`` the actor's, the critic's and the entropy coefficient's Adam states are
  restored and so is the tuned coefficient, so training continues as from SB3's zip.
- :func:`save_replay_arrays` / :func:`load_replay_arrays` write and read a
  :class:`~recurrent_rl.sac.buffers.SequenceReplayBuffer` as a NumPy ``.npz`` of plain arrays
  (no object arrays: ``allow_pickle=False``), the stored steps only; every array is checked
  against the buffer it is read into (names, dtypes, shapes, counters, finite values) before
  any of it is used. SB3's ``save_replay_buffer`` pickles the whole buffer object instead.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from recurrent_rl.atomic import atomic_path
from recurrent_rl.io.optimizer import load_optimizer
from recurrent_rl.io.safe import (
    SAC_HYPERPARAMETERS,
    build_with_weights,
    check_for_env,
    model_optimizers,
    optimizer_path,
    restore_counters,
    safe_paths,
)
from recurrent_rl.io.values import SafeFormatError, as_safe_error, schedule_from_json
from recurrent_rl.sac.buffers import SequenceReplayBuffer
from recurrent_rl.sac.policies import RecurrentSACPolicy

POLICIES = {"MlpPolicy": RecurrentSACPolicy}  # RecurrentSAC.policy_aliases
REPLAY_FORMAT = "recurrent_rl.sequence_replay"
REPLAY_FORMAT_VERSION = 1


def load_safe_sac(
    cls: Any,
    path: str | Path,
    env: Any = None,
    device: str | th.device = "auto",
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> Any:
    """A ``cls`` (:class:`~recurrent_rl.sac.algorithm.RecurrentSAC`) rebuilt from the safe copy at
    ``path``; the arguments are :func:`recurrent_rl.ppo.persistence.load_safe_model`'s. The replay
    buffer starts empty (:func:`load_replay_arrays` fills it)."""
    weights_path, config_path = safe_paths(path)
    where = str(config_path)
    checked, venv = check_for_env(cls, path, env, custom_classes, optimizer, POLICIES)
    config, hyper = checked.config, checked.config["hyperparameters"]
    model = cls(checked.policy_class, venv, device=device, _init_setup_model=False)
    for name in SAC_HYPERPARAMETERS:
        setattr(model, name, hyper[name])
    model.train_freq = tuple(hyper["train_freq"])
    model.learning_rate = schedule_from_json(hyper["learning_rate"], "learning_rate")
    restore_counters(model, checked, venv)
    build_with_weights(model, checked, where, weights_path)
    del checked
    if hyper["log_ent_coef"] is not None and model.log_ent_coef is not None:
        with th.no_grad():
            model.log_ent_coef.fill_(hyper["log_ent_coef"])
    if optimizer:
        with as_safe_error():
            for entry, state in model_optimizers(model).items():
                load_optimizer(_Holder(state), config.get(entry), optimizer_path(path, entry), where)
    return model


class _Holder:
    """What :func:`~recurrent_rl.io.optimizer.load_optimizer` reads of a model: ``policy.optimizer``."""

    def __init__(self, optimizer: th.optim.Optimizer):
        self.policy = self
        self.optimizer = optimizer


# --- the replay buffer as arrays ----------------------------------------------------------------------


def _arrays(buffer: SequenceReplayBuffer) -> dict[str, np.ndarray]:
    """The buffer's per-step arrays by name (each ``(buffer_size, n_envs, ...)``)."""
    arrays = {
        "observations": buffer.observations,
        "next_observations": buffer.next_observations,
        "actions": buffer.actions,
        "rewards": buffer.rewards,
        "dones": buffer.dones,
        "timeouts": buffer.timeouts,
        "episode_steps": buffer.episode_steps,
    }
    arrays.update({f"states_{index}": store for index, store in enumerate(buffer.states)})
    return arrays


def save_replay_arrays(buffer: SequenceReplayBuffer, path: str | Path) -> Path:
    """Write the stored steps of ``buffer`` to ``path`` (an ``.npz`` of plain arrays), atomically."""
    stored = buffer.buffer_size if buffer.full else buffer.pos
    header = {
        "format": np.array(REPLAY_FORMAT),
        "format_version": np.array(REPLAY_FORMAT_VERSION),
        "counters": np.array([buffer.buffer_size, buffer.n_envs, buffer.pos, int(buffer.full), stored]),
        "windows": np.array([buffer.sequence_length, buffer.burn_in]),
    }
    arrays = {name: np.ascontiguousarray(array[:stored]) for name, array in _arrays(buffer).items()}
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        np.savez(file, **header, **arrays)  # type: ignore[arg-type]  # numpy's stubs: allow_pickle among the names
    return path


def load_replay_arrays(buffer: SequenceReplayBuffer, path: str | Path) -> None:
    """Fill ``buffer`` from :func:`save_replay_arrays`'s file, every array checked first (a
    :class:`~recurrent_rl.io.values.SafeFormatError` naming the file and the array otherwise);
    nothing of ``buffer`` changes unless all pass."""
    path = Path(path)
    expected = _arrays(buffer)
    try:
        members = {info.filename.removesuffix(".npy"): info.file_size for info in zipfile.ZipFile(path).infolist()}
    except (OSError, zipfile.BadZipFile) as error:
        raise SafeFormatError(f"{path} is not a replay buffer file (an .npz of arrays): {error}") from None
    names = {"format", "format_version", "counters", "windows", *expected}
    if set(members) != names:
        raise SafeFormatError(
            f"{path} does not hold this model's replay buffer: arrays {sorted(members)[:12]}, expected {sorted(names)}"
            " (a buffer saved with other stored states, or not a RecurrentSAC's)"
        )
    for name, array in expected.items():  # before reading: an array's header cannot ask for more than this
        if members[name] > array.nbytes + 4096:
            raise SafeFormatError(f"{path} ({name}) is larger than this model's replay buffer: refused")
    with np.load(path, allow_pickle=False) as data:
        if str(data["format"]) != REPLAY_FORMAT or int(data["format_version"]) != REPLAY_FORMAT_VERSION:
            raise SafeFormatError(f"{path} is not a {REPLAY_FORMAT} file of version {REPLAY_FORMAT_VERSION}")
        size, n_envs, pos, full, stored = (int(v) for v in data["counters"])
        if (size, n_envs) != (buffer.buffer_size, buffer.n_envs):
            raise SafeFormatError(
                f"{path} holds a buffer of {size} steps x {n_envs} envs, this model's is {buffer.buffer_size} x "
                f"{buffer.n_envs}"
            )
        if [int(v) for v in data["windows"]] != [buffer.sequence_length, buffer.burn_in]:
            raise SafeFormatError(
                f"{path} was saved with sequence_length, burn_in = {list(data['windows'])}, this model uses "
                f"{[buffer.sequence_length, buffer.burn_in]}"
            )
        if full not in (0, 1) or not 0 <= pos < size or stored != (size if full else pos):
            raise SafeFormatError(f"{path}: inconsistent counters pos={pos}, full={full}, stored={stored}")
        loaded = {}
        for name, array in expected.items():
            value = data[name]
            if value.dtype != array.dtype or value.shape != (stored, *array.shape[1:]):
                raise SafeFormatError(
                    f"{path} ({name}) is {value.dtype} {list(value.shape)}, this model's buffer stores "
                    f"{array.dtype} {[stored, *array.shape[1:]]}"
                )
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise SafeFormatError(f"{path} ({name}) holds nan or inf: refused")
            loaded[name] = value
    if (loaded["episode_steps"] < 0).any():
        raise SafeFormatError(f"{path} (episode_steps) holds negative step counts: refused")
    for name, array in expected.items():
        array[:stored] = loaded[name]
    buffer.pos, buffer.full = pos, bool(full)
