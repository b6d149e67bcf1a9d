"""A model format that never unpickles: ``model.safetensors`` (weights) + ``model.json`` (plain data).

SB3's ``model.zip`` and VecNormalize's ``vecnormalize.pkl`` are pickles in part or whole: opening
one that a stranger sent runs whatever code it was crafted to run. The safe copy holds only
tensors and JSON:

- ``<prefix>.safetensors``: the policy's ``state_dict`` (safetensors, which stores raw tensor
  bytes and a JSON header); a tensor that several modules share (a shared features extractor)
  is stored once and its other names are listed in the JSON as aliases;
- ``<prefix>.json``: what rebuilds the model around the weights: the policy class (one of the
  aliases, ``MlpGruPolicy`` ...), ``policy_kwargs`` as JSON (classes as ``"module:qualname"``
  strings, accepted only from torch.nn, torch.optim, SB3 and recurrent_rl, and only classes of
  modules or optimizers), the hyperparameters that acting and further training use, the spaces
  (:mod:`recurrent_rl.export.spaces`), the VecNormalize statistics, the step counter, the versions
  that wrote it and the SHA-256 of the weights file (so a damaged or mismatched pair is refused).

:func:`load_safe` rebuilds a :class:`~recurrent_rl.RecurrentPPO` from them with
``RecurrentPPO``'s own constructor and ``load_state_dict``: no ``pickle``, ``torch.load`` or
SB3 ``load`` is ever called.

The optimizer's state is stored on request (``save_safe(..., optimizer=True)``, as every checkpoint
of a run folder does): ``<prefix>.optimizer.safetensors`` holds its tensors (Adam's moments and
step counters) and the ``optimizer`` entry of the JSON its parameter groups and the file's SHA-256.
``load_safe(..., optimizer=True)`` restores it, so ``recurrent-rl train --resume`` continues from a
checkpoint without unpickling anything. Not stored: a learning-rate or clip-range schedule that is
an arbitrary Python function (its value at the time of saving is stored instead; the ``lin_<x>``
schedules of the configs and SB3's schedule classes are stored as such).
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from torch import nn

from recurrent_rl.errors import UserInputError
from recurrent_rl.export.format import env_id_of
from recurrent_rl.export.spaces import describe, space_from_json, space_to_json
from recurrent_rl.versions import package_versions

FORMAT = "recurrent_rl.safe_model"
FORMAT_VERSION = 1
WEIGHTS = ".safetensors"
CONFIG = ".json"
OPTIMIZER = ".optimizer.safetensors"  # the optimizer's state, beside a checkpoint's weights
DEFAULT_NAME = "model"  # a folder's safe copy: model.safetensors + model.json
# where the classes named in policy_kwargs may come from
ALLOWED_MODULES = ("torch.nn", "torch.optim", "stable_baselines3", "recurrent_rl")
# the algorithm's attributes stored and restored (constructor arguments of RecurrentPPO)
HYPERPARAMETERS = (
    "n_steps",
    "batch_size",
    "n_epochs",
    "gamma",
    "gae_lambda",
    "normalize_advantage",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "use_sde",
    "sde_sample_freq",
    "target_kl",
    "sequence_length",
    "seed",
)
SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")
OPTIONAL_HYPERPARAMETERS = ("state_refresh", "burn_in", "burn_in_gradient")  # absent from older files: defaults
_MARKERS = ("__class__", "__tuple__")


class SafeFormatError(UserInputError):
    """A safe model file that cannot be written or read as asked."""


# --- paths -------------------------------------------------------------------------------------------


def safe_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, config) for a folder (``model.safetensors``, ``model.json`` inside it; an existing
    folder or a path ending in ``/``) or a prefix (``runs/x/best_model``, or either file's own name,
    or ``model.zip`` for the safe copy next to it)."""
    folder = str(path).endswith(("/", os.sep))  # "runs/x/": a folder, existing or not
    path = Path(path)
    if path.is_dir() or folder:
        path = path / DEFAULT_NAME
    elif path.suffix in (WEIGHTS, CONFIG, ".zip"):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS), path.with_name(path.name + CONFIG)


def optimizer_path(path: str | Path) -> Path:
    """``<prefix>.optimizer.safetensors``: the optimizer state written with ``save_safe(..., optimizer=True)``."""
    weights, _ = safe_paths(path)
    return weights.with_name(weights.name.removesuffix(WEIGHTS) + OPTIMIZER)


def has_safe_copy(path: str | Path) -> bool:
    """Whether both files of a safe copy exist for ``path`` (a folder, prefix, or ``model.zip``
    whose safe copy lies next to it)."""
    weights, config = safe_paths(path)
    return weights.is_file() and config.is_file()


# --- JSON for policy_kwargs ---------------------------------------------------------------------------


def _class_name(cls: type) -> str:
    """``module:qualname``, preferring the public ``torch.nn`` / ``torch.optim`` name."""
    for public in ("torch.nn", "torch.optim"):
        if getattr(importlib.import_module(public), cls.__name__, None) is cls:
            return f"{public}:{cls.__name__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, (nn.Module, th.optim.Optimizer))


def _allowed_module(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ALLOWED_MODULES)


def _custom(custom_classes: Mapping[str, type] | Iterable[type] | None) -> dict[str, type]:
    if custom_classes is None:
        return {}
    if isinstance(custom_classes, Mapping):
        return dict(custom_classes)
    return {f"{cls.__module__}:{cls.__qualname__}": cls for cls in custom_classes}


def to_json(value: Any, where: str, custom: Mapping[str, type] | None = None) -> Any:
    """``value`` (policy_kwargs and what they hold) as JSON; classes as ``{"__class__": "module:qualname"}``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise SafeFormatError(f"{where} is {value}: JSON holds finite numbers only")
        return float(value)
    if isinstance(value, list):
        return [to_json(v, f"{where}[{i}]", custom) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, f"{where}[{i}]", custom) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str) or key in _MARKERS:
                raise SafeFormatError(f"{where} has the key {key!r}: the safe format takes string keys only")
            out[key] = to_json(v, f"{where}.{key}", custom)
        return out
    if isinstance(value, type):
        if custom and value in custom.values():
            return {"__class__": next(name for name, cls in custom.items() if cls is value)}
        name = _class_name(value)
        if not (_allowed_module(name.split(":")[0]) and _allowed_class(value) and "<locals>" not in name):
            raise SafeFormatError(
                f"{where} is the class {name}, which the safe format does not store: it takes module and optimizer "
                f"classes of {', '.join(ALLOWED_MODULES)}. Pass it in custom_classes=[...] to save_safe and load_safe "
                "(the loader then imports nothing itself), or share the model as SB3's zip"
            )
        return {"__class__": name}
    raise SafeFormatError(
        f"{where} is a {type(value).__name__}, which the safe format cannot store (numbers, strings, lists, "
        "dicts, tuples and classes only); share the model as SB3's zip instead"
    )


def resolve_class(name: str, where: str, custom: Mapping[str, type] | None = None) -> type:
    """The class ``module:qualname`` from the allow-list (or ``custom``), never anything else."""
    if custom and name in custom:
        return custom[name]
    module_name, _, qualname = name.partition(":")
    if not qualname or not _allowed_module(module_name) or any(not p or p[0] in "_<" for p in qualname.split(".")):
        raise SafeFormatError(
            f"{where} names the class {name!r}, which is not from {', '.join(ALLOWED_MODULES)}: refused (loading it "
            "would import code the file chose). If you trust it, pass custom_classes={...: TheClass} to load_safe"
        )
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise SafeFormatError(f"{where}: the class {name!r} does not exist in this installation ({error})") from None
    if not _allowed_class(value):
        raise SafeFormatError(f"{where}: {name!r} is not a torch module or optimizer class: refused")
    return value


def from_json(value: Any, where: str, custom: Mapping[str, type] | None = None) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, list):
        return [from_json(v, f"{where}[{i}]", custom) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if set(value) == {"__class__"}:
            return resolve_class(str(value["__class__"]), where, custom)
        if set(value) == {"__tuple__"}:
            return tuple(from_json(v, f"{where}[{i}]", custom) for i, v in enumerate(value["__tuple__"]))
        return {key: from_json(v, f"{where}.{key}", custom) for key, v in value.items()}
    return value


# --- schedules ------------------------------------------------------------------------------------------


def _schedule_to_json(value: Any, name: str, model: Any) -> Any:
    """A learning-rate / clip-range setting: a number, ``{"schedule": ...}`` for the known
    schedules, or the value now of any other function (with a warning)."""
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    if isinstance(value, FloatSchedule):
        value = value.value_schedule
    if isinstance(value, ConstantSchedule):
        value = value.val
    if value is None or isinstance(value, (int, float, np.number)):
        return None if value is None else float(value)
    if type(value).__module__ == "recurrent_rl.runs.config" and type(value).__name__ == "Linear":
        return {"schedule": "linear", "initial": float(value.initial)}
    if isinstance(value, LinearSchedule):
        return {
            "schedule": "sb3_linear",
            "start": float(value.start),
            "end": float(value.end),
            "end_fraction": float(value.end_fraction),
        }
    now = float(value(getattr(model, "_current_progress_remaining", 1.0)))
    warnings.warn(
        f"{name} is a function ({value!r}) that the safe format cannot store: it stores its current value {now:g}",
        stacklevel=3,
    )
    return now


def _schedule_from_json(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, dict) and value.get("schedule") == "linear":
        linear = importlib.import_module("recurrent_rl.runs.config").Linear
        return linear(float(value["initial"]))
    if isinstance(value, dict) and value.get("schedule") == "sb3_linear":
        from stable_baselines3.common.utils import LinearSchedule

        return LinearSchedule(float(value["start"]), float(value["end"]), float(value["end_fraction"]))
    raise SafeFormatError(f"{name}: unknown schedule {value!r:.100}")


# --- VecNormalize statistics ------------------------------------------------------------------------


def _rms_to_json(rms: Any) -> dict[str, Any]:
    return {
        "mean": np.asarray(rms.mean, dtype=np.float64).tolist(),
        "var": np.asarray(rms.var, dtype=np.float64).tolist(),
        "count": float(rms.count),
    }


def vecnormalize_to_json(vecnormalize: Any) -> dict[str, Any]:
    """VecNormalize's statistics and settings as JSON (the ``vecnormalize`` entry of ``model.json``)."""
    obs_rms = vecnormalize.obs_rms
    return {
        "norm_obs": bool(vecnormalize.norm_obs),
        "norm_reward": bool(vecnormalize.norm_reward),
        "clip_obs": float(vecnormalize.clip_obs),
        "clip_reward": float(vecnormalize.clip_reward),
        "gamma": float(vecnormalize.gamma),
        "epsilon": float(vecnormalize.epsilon),
        "norm_obs_keys": None if vecnormalize.norm_obs_keys is None else list(vecnormalize.norm_obs_keys),
        "obs_rms": {k: _rms_to_json(r) for k, r in obs_rms.items()}
        if isinstance(obs_rms, dict)
        else _rms_to_json(obs_rms),
        "ret_rms": _rms_to_json(vecnormalize.ret_rms),
    }


def _set_rms(rms: Any, data: dict[str, Any], where: str) -> None:
    mean, var = np.asarray(data["mean"], dtype=np.float64), np.asarray(data["var"], dtype=np.float64)
    if mean.shape != np.shape(rms.mean) or var.shape != np.shape(rms.var):
        raise SafeFormatError(
            f"{where}: statistics of shape {mean.shape} for observations of shape {np.shape(rms.mean)}"
        )
    rms.mean, rms.var, rms.count = mean, var, float(data["count"])


# --- optimizer state ------------------------------------------------------------------------------------


def optimizer_to_safe(optimizer: th.optim.Optimizer) -> tuple[dict[str, th.Tensor], dict[str, Any]]:
    """(tensors, JSON) of an optimizer's ``state_dict``: each state tensor as ``state.<index>.<key>``
    (Adam: ``exp_avg``, ``exp_avg_sq``, ``step``), the parameter groups and any non-tensor state as JSON."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, th.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if isinstance(value, th.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                values.setdefault(str(index), {})[key] = to_json(value, f"optimizer state {index}.{key}")
    groups = [to_json(dict(g), f"optimizer param_groups[{i}]") for i, g in enumerate(state_dict["param_groups"])]
    return tensors, {"class": _class_name(type(optimizer)), "param_groups": groups, "state_values": values}


def optimizer_from_safe(tensors: Mapping[str, th.Tensor], data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The ``state_dict`` that :func:`optimizer_to_safe` described."""
    state: dict[int, dict[str, Any]] = {}
    try:
        for name, tensor in tensors.items():
            head, index, key = name.split(".", 2)
            if head != "state":
                raise ValueError(f"unexpected tensor {name!r}")
            state.setdefault(int(index), {})[key] = tensor
        for index, entries in dict(data.get("state_values", {})).items():
            state.setdefault(int(index), {}).update(from_json(entries, f"{where} optimizer state"))
        groups = [from_json(group, f"{where} optimizer param_groups") for group in data["param_groups"]]
    except (KeyError, TypeError, ValueError) as error:
        raise SafeFormatError(f"{where}: the optimizer state is malformed ({type(error).__name__}: {error})") from None
    return {"state": state, "param_groups": groups}


def _load_optimizer(model: Any, config: Mapping[str, Any], path: str | Path) -> None:
    where, file = str(safe_paths(path)[1]), optimizer_path(path)
    data = config.get("optimizer")
    if not isinstance(data, dict) or not file.is_file():
        raise SafeFormatError(
            f"{where} was saved without its optimizer state ({file.name}): it acts and trains, but cannot continue "
            "a training with Adam's moments. Load it with optimizer=False"
        )
    if _sha256(file) != data.get("sha256"):
        raise SafeFormatError(
            f"{file} is not the optimizer state {Path(where).name} was written with (damaged, truncated, or "
            "replaced): refused"
        )
    state_dict = optimizer_from_safe(_load_tensors(file), data, where)
    try:
        model.policy.optimizer.load_state_dict(state_dict)
    except (ValueError, KeyError, RuntimeError) as error:
        raise SafeFormatError(f"{file} does not fit the policy's optimizer: {error}") from None


# --- save ------------------------------------------------------------------------------------------------


def _policy_name(policy: Any) -> str:
    from recurrent_rl.nets.policies import POLICY_ALIASES, RecurrentActorCriticPolicy

    for name, cls in POLICY_ALIASES.items():
        if type(policy) is cls:
            return name
    if type(policy) is RecurrentActorCriticPolicy:
        return "RecurrentActorCriticPolicy"
    raise SafeFormatError(
        f"the safe format stores policies of the classes {sorted(POLICY_ALIASES)}; this model's policy is a "
        f"{type(policy).__module__}.{type(policy).__qualname__}. Share it as SB3's zip (model.save)"
    )


def _unique_tensors(state_dict: dict[str, th.Tensor]) -> tuple[dict[str, th.Tensor], dict[str, str]]:
    """(tensors stored once each, alias name -> stored name) for tensors that share storage."""
    stored: dict[str, th.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
        )
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        stored[name] = tensor.cpu().contiguous().clone()  # a private contiguous copy (safetensors needs one per name)
    return stored, aliases


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_safe(
    model: Any,
    directory_or_prefix: str | Path,
    vecnormalize: Any = None,
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> tuple[Path, Path]:
    """Write the safe copy of ``model``: ``<prefix>.safetensors`` and ``<prefix>.json``.

    :param directory_or_prefix: a folder (then ``model.safetensors`` and ``model.json`` inside it)
        or a prefix (``runs/x/best_model`` writes ``best_model.safetensors`` and ``best_model.json``)
    :param vecnormalize: the VecNormalize whose statistics to store (or the ``vecnormalize``
        entry of another safe copy). None: the model's own VecNormalize env, if any; False: none
    :param custom_classes: classes outside the allow-list that ``policy_kwargs`` may name (your own
        features extractor); the loader must be given them too
    :param optimizer: also write the optimizer's state (``<prefix>.optimizer.safetensors``), so that
        training continues from the copy as from SB3's zip (``load_safe(..., optimizer=True)``)
    :returns: (weights, config) paths; each file is written to a temporary file and renamed into
        place, the config last, since it holds the SHA-256 of the others
    """
    from safetensors.torch import save_file

    from recurrent_rl import __version__
    from recurrent_rl.atomic import atomic_path

    custom = _custom(custom_classes)
    policy = model.policy
    if vecnormalize is None:
        vecnormalize = model.get_vec_normalize_env()
    elif vecnormalize is False:
        vecnormalize = None
    weights_path, config_path = safe_paths(directory_or_prefix)
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": type(model).__name__,
        "policy": _policy_name(policy),
        "policy_kwargs": to_json(dict(model.policy_kwargs), "policy_kwargs", custom),
        "hyperparameters": {
            **{name: to_json(getattr(model, name), name) for name in HYPERPARAMETERS + OPTIONAL_HYPERPARAMETERS},
            **{name: _schedule_to_json(getattr(model, name), name, model) for name in SCHEDULES},
            "stats_window_size": int(model._stats_window_size),
        },
        "n_envs": int(model.n_envs),
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
        "vecnormalize": None
        if vecnormalize is None
        else dict(vecnormalize)
        if isinstance(vecnormalize, dict)
        else vecnormalize_to_json(vecnormalize),
        "env_id": env_id_of(model),
        "versions": {**package_versions("safetensors"), "recurrent_rl": __version__},
    }
    if config["algorithm"] != "RecurrentPPO":
        raise SafeFormatError(f"save_safe stores RecurrentPPO models, got a {config['algorithm']}")
    tensors, aliases = _unique_tensors(policy.state_dict())
    config["aliases"] = aliases
    config_path.parent.mkdir(parents=True, exist_ok=True)
    if optimizer:
        optimizer_tensors, config["optimizer"] = optimizer_to_safe(policy.optimizer)
        with atomic_path(optimizer_path(directory_or_prefix)) as tmp:
            save_file(optimizer_tensors, str(tmp), metadata={"format": "pt", "recurrent_rl": FORMAT})
            config["optimizer"]["sha256"] = _sha256(tmp)
    # The pair cannot be renamed into place at once. The JSON is written in full first, then the
    # weights are renamed, then the JSON: a kill between the two renames leaves the new JSON in its
    # leftover folder, where read_safe_config finds it (and runs.folders.remove_leftovers puts it
    # in place), so both files under their final names always load, the old pair or the new one.
    pending: Path | None = None
    try:
        with atomic_path(weights_path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "recurrent_rl": FORMAT})
            config["weights_sha256"] = _sha256(tmp)
            try:
                text = json.dumps(config, indent=1, allow_nan=False)
            except ValueError as error:  # nan in the VecNormalize statistics
                raise SafeFormatError(f"the model's data holds a value JSON cannot store: {error}") from None
            pending = _write_pending(config_path, text + "\n")
        os.replace(pending, config_path)
    finally:
        if pending is not None:
            try:  # interrupted (Ctrl-C) after the weights were renamed: the JSON follows them
                if pending.exists() and _sha256(weights_path) == config["weights_sha256"]:
                    os.replace(pending, config_path)
            finally:
                shutil.rmtree(pending.parent, ignore_errors=True)
    return weights_path, config_path


def _write_pending(config_path: Path, text: str) -> Path:
    """``text`` in ``.<name>.<random>.tmp/<name>`` beside ``config_path`` (synced, usual mode)."""
    from recurrent_rl.atomic import UMASK, fsync

    folder = Path(tempfile.mkdtemp(prefix=f".{config_path.name}.", suffix=".tmp", dir=config_path.parent))
    path = folder / config_path.name
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o666 & ~UMASK)
    fsync(path)
    return path


def _pending_configs(config_path: Path) -> list[Path]:
    return sorted(config_path.parent.glob(f".{glob.escape(config_path.name)}.*.tmp/{glob.escape(config_path.name)}"))


def _matching_pending_config(weights_path: Path, config_path: Path) -> Path | None:
    """The JSON that a kill left in its leftover folder and that belongs to ``weights_path``, if any."""
    pending = _pending_configs(config_path)
    if not pending:
        return None
    digest = _sha256(weights_path)
    for path in pending:
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("weights_sha256") == digest:
                return path
        except (OSError, ValueError, AttributeError):
            continue
    return None


def complete_pending_config(path: str | Path) -> bool:
    """Put in place the JSON of a safe copy whose weights were renamed into place but whose JSON
    was not (a kill between the two renames of :func:`save_safe`); True when it did."""
    weights_path, config_path = safe_paths(path)
    if not weights_path.is_file():
        return False
    pending = _matching_pending_config(weights_path, config_path)
    if pending is None:
        return False
    os.replace(pending, config_path)
    return True


# --- load ------------------------------------------------------------------------------------------------


def read_safe_config(path: str | Path) -> dict[str, Any]:
    """The checked ``model.json`` of a safe copy (format, version, and that its weights file is the
    one it was written with)."""
    weights_path, config_path = safe_paths(path)
    for file in (config_path, weights_path):
        if not file.is_file():
            raise SafeFormatError(
                f"the safe copy {file} does not exist (a safe copy is {weights_path.name} and "
                f"{config_path.name} side by side)"
            )
    config = _parse_config(config_path)
    if _sha256(weights_path) != config.get("weights_sha256"):
        pending = _matching_pending_config(weights_path, config_path)
        if pending is not None:  # killed between the two renames of save_safe: its JSON waits there
            return _parse_config(pending)
        raise SafeFormatError(
            f"{weights_path} is not the weights file {config_path.name} was written with (damaged, truncated, or "
            "replaced): refused. Copy both files of the safe copy together"
        )
    return config


def _parse_config(config_path: Path) -> dict[str, Any]:
    """``model.json`` read and checked for its format and version."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SafeFormatError(f"{config_path} is not valid JSON (damaged or truncated): {error}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise SafeFormatError(
            f"{config_path} is not a recurrent_rl safe model (its format is {found!r}, expected {FORMAT!r})"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise SafeFormatError(
            f"{config_path} is format version {config.get('format_version')!r}; this recurrent_rl "
            f"reads version {FORMAT_VERSION}"
        )
    return config


def _load_tensors(weights_path: Path) -> dict[str, th.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise SafeFormatError(f"{weights_path} is not a readable safetensors file: {error}") from None


def _wrapped_env(env: Any) -> Any:
    from stable_baselines3.common.base_class import maybe_make_env

    from recurrent_rl.ppo.algorithm import RecurrentPPO

    return RecurrentPPO._wrap_env(maybe_make_env(env, 0), verbose=0)


def load_safe(
    path: str | Path,
    env: Any = None,
    device: str | th.device = "auto",
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> Any:
    """A :class:`~recurrent_rl.RecurrentPPO` rebuilt from a safe copy, without unpickling anything.

    :param path: a folder holding ``model.safetensors`` and ``model.json``, or a prefix / either file
    :param env: the env to attach (a VecEnv, a Gymnasium env or an id), as ``RecurrentPPO.load``
        takes it; its spaces must be the model's. None: a model without env (``predict`` works)
    :param device: where the policy goes (``"auto"``: CUDA when available)
    :param custom_classes: classes outside the allow-list that the file's ``policy_kwargs`` name
    :param optimizer: also restore the optimizer's state (Adam's moments), which the copy must hold
        (``save_safe(..., optimizer=True)``; every checkpoint of a run folder does): training then
        continues as from SB3's zip
    """
    from recurrent_rl.nets.policies import POLICY_ALIASES, RecurrentActorCriticPolicy
    from recurrent_rl.ppo.algorithm import RecurrentPPO

    custom = _custom(custom_classes)
    config = read_safe_config(path)
    weights_path, config_path = safe_paths(path)
    where = str(config_path)
    try:
        observation_space = space_from_json(config["observation_space"], where)
        action_space = space_from_json(config["action_space"], where)
        policy_name = config["policy"]
        hyper = dict(config["hyperparameters"])
        policy_kwargs = from_json(config["policy_kwargs"], "policy_kwargs", custom)
        aliases = dict(config.get("aliases", {}))
    except (KeyError, TypeError, AttributeError) as error:
        raise SafeFormatError(
            f"{where} lacks an entry or has one of the wrong kind ({type(error).__name__}: {error})"
        ) from None
    policy_class: Any = {**POLICY_ALIASES, "RecurrentActorCriticPolicy": RecurrentActorCriticPolicy}.get(policy_name)
    if policy_class is None:
        raise SafeFormatError(f"{where}: unknown policy {policy_name!r}; expected one of {sorted(POLICY_ALIASES)}")
    tensors = _load_tensors(weights_path)

    venv = None
    if env is not None:
        venv = _wrapped_env(env)
        if venv.observation_space != observation_space or venv.action_space != action_space:
            raise SafeFormatError(
                f"the model in {where} was trained on observations {describe(observation_space)} and actions "
                f"{describe(action_space)}, but the env has observations {describe(venv.observation_space)} and "
                f"actions {describe(venv.action_space)}: attach the env it was trained on"
            )
    # As SB3's load does: construct without building, set what was saved, then build.
    model = RecurrentPPO(policy_class, venv, device=device, _init_setup_model=False)  # type: ignore[arg-type]
    try:
        for name in HYPERPARAMETERS + tuple(n for n in OPTIONAL_HYPERPARAMETERS if n in hyper):
            setattr(model, name, hyper[name])
        for name in SCHEDULES:
            setattr(model, name, _schedule_from_json(hyper[name], name))
        model._stats_window_size = int(hyper["stats_window_size"])
        model.num_timesteps = int(config["num_timesteps"])
        model._n_updates = int(config["n_updates"])
        n_envs = int(config["n_envs"])
    except (KeyError, TypeError, ValueError) as error:
        raise SafeFormatError(
            f"{where}: the hyperparameters are incomplete ({type(error).__name__}: {error})"
        ) from None
    model.policy_kwargs = policy_kwargs
    if venv is None:
        model.observation_space, model.action_space, model.n_envs = observation_space, action_space, n_envs
    try:
        model._setup_model()
    except (ValueError, TypeError) as error:
        raise SafeFormatError(f"{where}: the stored settings do not build a model: {error}") from None
    state_dict = model.policy.state_dict()
    missing = sorted(set(state_dict) - set(tensors) - set(aliases))
    unexpected = sorted(set(tensors) - set(state_dict))
    if missing or unexpected:
        raise SafeFormatError(
            f"{weights_path} does not fit the policy in {config_path.name}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}"
        )
    full = {name: tensors[aliases[name]] if name in aliases else tensors[name] for name in state_dict}
    try:
        model.policy.load_state_dict(full, strict=True)
    except RuntimeError as error:
        raise SafeFormatError(f"{weights_path} does not fit the policy: {str(error).splitlines()[0]}") from None
    if optimizer:
        _load_optimizer(model, config, path)
    return model


def read_safe_vecnormalize(path: str | Path) -> dict[str, Any] | None:
    """The VecNormalize entry of a safe copy (None when the model was trained without VecNormalize)."""
    return read_safe_config(path).get("vecnormalize")


def load_safe_vecnormalize(path: str | Path, venv: Any) -> Any:
    """A ``VecNormalize`` around ``venv`` with the statistics of a safe copy, in evaluation mode
    (``training=False``: the statistics stay fixed; reward normalisation as it was saved)."""
    from stable_baselines3.common.vec_env import VecNormalize

    data = read_safe_vecnormalize(path)
    where = str(safe_paths(path)[1])
    if data is None:
        raise SafeFormatError(f"{where} holds no VecNormalize statistics: the model was trained without VecNormalize")
    try:
        normalizer = VecNormalize(
            venv,
            training=False,
            norm_obs=bool(data["norm_obs"]),
            norm_reward=bool(data["norm_reward"]),
            clip_obs=float(data["clip_obs"]),
            clip_reward=float(data["clip_reward"]),
            gamma=float(data["gamma"]),
            epsilon=float(data["epsilon"]),
            norm_obs_keys=data["norm_obs_keys"],
        )
    except (KeyError, ValueError, AssertionError) as error:
        raise SafeFormatError(f"{where}: the VecNormalize statistics do not fit this env: {error}") from None
    try:
        if isinstance(normalizer.obs_rms, dict):
            for key, rms in normalizer.obs_rms.items():
                _set_rms(rms, data["obs_rms"][key], f"{where} (VecNormalize, {key!r})")
        else:
            _set_rms(normalizer.obs_rms, data["obs_rms"], f"{where} (VecNormalize)")
        _set_rms(normalizer.ret_rms, data["ret_rms"], f"{where} (VecNormalize returns)")
    except (KeyError, TypeError) as error:
        raise SafeFormatError(f"{where}: the VecNormalize statistics are incomplete ({error})") from None
    return normalizer
