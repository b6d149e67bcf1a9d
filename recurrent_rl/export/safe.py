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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch as th
from torch import nn

from recurrent_rl.export.format import env_id_of
from recurrent_rl.export.schema import check_optimizer_entry, check_safe_config
from recurrent_rl.export.spaces import describe, space_from_json, space_to_json
from recurrent_rl.received import MAX_TEXT_BYTES, ReceivedFileError, check_memory, cut, load_json, read_text, shorten
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
_MARKERS = ("__class__", "__tuple__")


# the classes a received policy_kwargs may name, by key (any class of custom_classes anywhere)
CLASS_KEYS = ("activation_fn", "optimizer_class", "features_extractor_class")
# torch.optim's optimizers that step on dense gradients without a closure (not LBFGS, SparseAdam)
OPTIMIZERS = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SGD", "RMSprop", "Adagrad", "Adadelta", "ASGD", "Rprop")
# the same update under two names: the speed backend's Adam is torch's fused Adam (accel.optim)
SAME_OPTIMIZER = {"recurrent_rl.accel.optim:PolicyAdam": "torch.optim:Adam"}
JSON_BYTES_PER_BYTE = 32  # Python objects a parsed JSON text takes, per byte of text (at most, about)


class SafeFormatError(ReceivedFileError):
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
    whose safe copy lies next to it); a JSON that waits in its leftover folder because a save was
    killed between its two renames counts (:func:`read_safe_config` reads it there)."""
    weights, config = safe_paths(path)
    if not weights.is_file():
        return False
    return config.is_file() or _matching_pending_config(weights, config) is not None


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
            f"{where} names the class {shorten(name)}, which is not from {', '.join(ALLOWED_MODULES)}: refused "
            "(loading it would import code the file chose). If you trust it, pass custom_classes={...: TheClass} "
            "to load_safe"
        )
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as error:
        raise SafeFormatError(
            f"{where}: the class {shorten(name)} does not exist in this installation ({shorten(str(error))})"
        ) from None
    if not _allowed_class(value):
        raise SafeFormatError(f"{where}: {shorten(name)} is not a torch module or optimizer class: refused")
    return value


def from_json(value: Any, where: str, custom: Mapping[str, type] | None = None, key: str | None = None) -> Any:
    """The inverse of :func:`to_json`, for a file's data: a class only under one of
    :data:`CLASS_KEYS`, and only of the kind that key takes (any class of ``custom``)."""
    if isinstance(value, list):
        return [from_json(v, f"{where}[{i}]", custom, key) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if set(value) == {"__class__"}:
            return _received_class(value["__class__"], where, custom, key)
        if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
            return tuple(from_json(v, f"{where}[{i}]", custom, key) for i, v in enumerate(value["__tuple__"]))
        return {k: from_json(v, f"{where}.{cut(str(k))}", custom, k) for k, v in value.items()}
    return value


def _received_class(name: Any, where: str, custom: Mapping[str, type] | None, key: str | None) -> type:
    """The class ``name`` for the policy option ``key``: an activation of torch.nn, one of
    :data:`OPTIMIZERS`, or a features extractor; refused before importing anything else."""
    if not isinstance(name, str):
        raise SafeFormatError(f"{where}: a class name must be a string, got {shorten(name)}")
    if custom and name in custom:
        return custom[name]
    module, _, qualname = name.partition(":")
    optimizer = name in SAME_OPTIMIZER or (module == "torch.optim" and qualname in OPTIMIZERS)
    if key not in CLASS_KEYS or (key == "optimizer_class") != optimizer:
        raise SafeFormatError(
            f"{where} names the class {shorten(name)}, which is refused there: a file may name an activation "
            f"(activation_fn), an optimizer of {', '.join(OPTIMIZERS)} (optimizer_class) or a features extractor "
            "(features_extractor_class). If you trust it, pass custom_classes={...: TheClass} to load_safe"
        )
    cls = resolve_class(name, where, custom)
    if key == "activation_fn" and not cls.__module__.startswith("torch.nn.modules.activation"):
        raise SafeFormatError(f"{where}: {shorten(name)} is not an activation of torch.nn: refused")
    if key == "features_extractor_class":
        from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

        if not issubclass(cls, BaseFeaturesExtractor):
            raise SafeFormatError(f"{where}: {shorten(name)} is not a features extractor: refused")
    return cls


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
    """VecNormalize's statistics and settings as JSON (the ``vecnormalize`` entry of ``model.json``;
    ``obs_rms`` is null when observations are not normalised: SB3 keeps no statistics then)."""
    obs_rms = vecnormalize.obs_rms if vecnormalize.norm_obs else None
    return {
        "norm_obs": bool(vecnormalize.norm_obs),
        "norm_reward": bool(vecnormalize.norm_reward),
        "clip_obs": float(vecnormalize.clip_obs),
        "clip_reward": float(vecnormalize.clip_reward),
        "gamma": float(vecnormalize.gamma),
        "epsilon": float(vecnormalize.epsilon),
        "norm_obs_keys": None if vecnormalize.norm_obs_keys is None else list(vecnormalize.norm_obs_keys),
        "obs_rms": None
        if obs_rms is None
        else {k: _rms_to_json(r) for k, r in obs_rms.items()}
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


def optimizer_from_safe(
    tensors: Mapping[str, th.Tensor], data: Mapping[str, Any], where: str, parameters: list[th.Tensor] | None = None
) -> dict[str, Any]:
    """The ``state_dict`` that :func:`optimizer_to_safe` described, checked: every tensor named
    ``state.<index>.<key>`` for a parameter of the groups, finite, and (given the policy's
    ``parameters``, in the optimizer's order) either a scalar or of its parameter's shape."""
    data = check_optimizer_entry(dict(data), where)
    indices = [int(p) for group in data["param_groups"] for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        head, _, rest = name.partition(".")
        index_text, _, key = rest.partition(".")
        if head != "state" or not index_text.isdigit() or int(index_text) not in indices or not key:
            raise SafeFormatError(f"{where}: the optimizer state holds the unexpected tensor {shorten(name)}")
        index = int(index_text)
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise SafeFormatError(f"{where}: the optimizer state {shorten(name)} holds nan or inf: refused")
        if parameters is not None and tensor.dim() and tuple(tensor.shape) != tuple(parameters[index].shape):
            raise SafeFormatError(
                f"{where}: the optimizer state {shorten(name)} has the shape {list(tensor.shape)}, its parameter "
                f"{list(parameters[index].shape)}"
            )
        state.setdefault(index, {})[key] = tensor
    for index, entries in data["state_values"].items():
        state.setdefault(int(index), {}).update(from_json(entries, f"{where} optimizer state"))
    groups = [from_json(group, f"{where} optimizer param_groups") for group in data["param_groups"]]
    return {"state": state, "param_groups": groups}


def _optimizer_name(name: str) -> str:
    return SAME_OPTIMIZER.get(name, name)


def _check_optimizer(policy: Any, config: Mapping[str, Any], path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The optimizer file of a safe copy and its JSON entry, checked against ``policy`` (a meta
    policy will do): the class the policy's optimizer has, the same parameter groups."""
    where, file = str(safe_paths(path)[1]), optimizer_path(path)
    data = config.get("optimizer")
    if not isinstance(data, dict) or not file.is_file():
        raise SafeFormatError(
            f"{where} was saved without its optimizer state ({file.name}): it acts and trains, but cannot continue "
            "a training with Adam's moments. Load it with optimizer=False"
        )
    expected = _class_name(type(policy.optimizer))
    if _optimizer_name(data["class"]) != _optimizer_name(expected):
        raise SafeFormatError(
            f"{where} (optimizer.class) names the optimizer {shorten(data['class'])}, but the policy it describes "
            f"trains with {expected}: the optimizer state is not this policy's, refused"
        )
    groups = [list(range(len(group["params"]))) for group in policy.optimizer.param_groups]
    offsets = [sum(len(g) for g in groups[:i]) for i in range(len(groups))]
    wanted = [[offset + i for i in group] for offset, group in zip(offsets, groups)]
    if [list(group["params"]) for group in data["param_groups"]] != wanted:
        raise SafeFormatError(
            f"{where} (optimizer.param_groups) does not list the policy's {sum(map(len, groups))} parameters in "
            "order: the optimizer state is not this policy's, refused"
        )
    if _sha256(file) != data.get("sha256"):
        raise SafeFormatError(
            f"{file} is not the optimizer state {Path(where).name} was written with (damaged, truncated, or "
            "replaced): refused"
        )
    return file, data


def _load_optimizer(model: Any, config: Mapping[str, Any], path: str | Path) -> None:
    file, data = _check_optimizer(model.policy, config, path)
    parameters = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
    state_dict = optimizer_from_safe(_load_tensors(file), data, str(file), parameters)
    try:
        model.policy.optimizer.load_state_dict(state_dict)
    except (ValueError, KeyError, RuntimeError, TypeError) as error:
        raise SafeFormatError(f"{file} does not fit the policy's optimizer: {shorten(str(error), 200)}") from None


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
    env_id: str | None = None,
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
    :param env_id: the env id to record (None: the id of the model's env, when it has one)
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
            **{name: to_json(getattr(model, name), name) for name in HYPERPARAMETERS},
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
        "env_id": env_id if env_id is not None else env_id_of(model),
        "versions": {**package_versions("safetensors"), "recurrent_rl": __version__},
    }
    if config["algorithm"] != "RecurrentPPO":
        raise SafeFormatError(f"save_safe stores RecurrentPPO models, got a {config['algorithm']}")
    tensors, aliases = _unique_tensors(policy.state_dict())
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise SafeFormatError(f"the policy's weight {name} holds nan or inf: no safe copy written (it cannot act)")
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
            limit = MAX_TEXT_BYTES + weights_path.stat().st_size
            if load_json(read_text(path, "model.json", limit), str(path)).get("weights_sha256") == digest:
                return path
        except (OSError, ReceivedFileError, AttributeError):
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
    """The checked ``model.json`` of a safe copy: its format and version, every field's type and
    range (:func:`recurrent_rl.export.schema.check_safe_config`), and that its weights file is the
    one it was written with.

    A copy whose weights were renamed into place by a save that was killed before it renamed the
    JSON (see :func:`save_safe`) is read with the JSON that waits in its leftover folder, whether
    an older ``model.json`` exists or none does yet: nothing is moved (``--resume`` puts it in place).
    """
    weights_path, config_path = safe_paths(path)
    with _as_safe_error():
        if not weights_path.is_file():
            raise SafeFormatError(
                f"the safe copy {weights_path} does not exist (a safe copy is {weights_path.name} and "
                f"{config_path.name} side by side)"
            )
        config = _parse_config(config_path, weights_path) if config_path.is_file() else None
        if config is not None and _sha256(weights_path) == config["weights_sha256"]:
            return config
        pending = _matching_pending_config(weights_path, config_path)
        if pending is not None:  # killed between the two renames of save_safe: its JSON waits there
            return _parse_config(pending, weights_path)
        if config is None:
            raise SafeFormatError(
                f"the safe copy {config_path} does not exist (a safe copy is {weights_path.name} and "
                f"{config_path.name} side by side)"
            )
        raise SafeFormatError(
            f"{weights_path} is not the weights file {config_path.name} was written with (damaged, truncated, or "
            "replaced): refused. Copy both files of the safe copy together"
        )


class _as_safe_error:
    """Turn the refusals of the shared checks (:mod:`recurrent_rl.received`, the spaces) into
    :class:`SafeFormatError`, so the loaders raise one kind of error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> Literal[False]:
        if isinstance(error, ReceivedFileError) and not isinstance(error, SafeFormatError):
            raise SafeFormatError(str(error)) from None
        return False


def _parse_config(config_path: Path, weights_path: Path) -> dict[str, Any]:
    """``model.json`` read (no larger than a few megabytes plus its weights: Box bounds grow with
    the observation, and so do the weights) and checked for its format, version and schema."""
    limit = MAX_TEXT_BYTES + (weights_path.stat().st_size if weights_path.is_file() else 0)
    check_memory(
        JSON_BYTES_PER_BYTE * min(config_path.stat().st_size, limit + 1), "reading this JSON", str(config_path)
    )
    config = load_json(read_text(config_path, "model.json", limit), str(config_path))
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise SafeFormatError(
            f"{config_path} is not a recurrent_rl safe model (its format is {shorten(found)}, expected {FORMAT!r})"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise SafeFormatError(
            f"{config_path} is format version {shorten(config.get('format_version'))}; this recurrent_rl "
            f"reads version {FORMAT_VERSION}"
        )
    return check_safe_config(config, str(config_path))


def _load_tensors(path: Path) -> dict[str, th.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_memory(2 * path.stat().st_size, "reading these tensors", str(path))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise SafeFormatError(f"{path} is not a readable safetensors file: {shorten(str(error), 200)}") from None


def _check_finite(tensors: Mapping[str, th.Tensor], path: Path) -> None:
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise SafeFormatError(
                f"{path}: the tensor {shorten(name)} holds nan or inf: these weights cannot act or train, refused"
            )


def _wrapped_env(env: Any) -> Any:
    from stable_baselines3.common.base_class import maybe_make_env

    from recurrent_rl.ppo.algorithm import RecurrentPPO

    return RecurrentPPO._wrap_env(maybe_make_env(env, 0), verbose=0)


@dataclass
class _Checked:
    """A safe copy that passed every check, with what building the model needs."""

    config: dict[str, Any]
    observation_space: Any
    action_space: Any
    policy_class: Any
    policy_kwargs: dict[str, Any]
    aliases: dict[str, str]
    meta: Any  # the policy on the meta device: the shapes, no memory
    tensors: dict[str, th.Tensor]


def _check(path: str | Path, custom: Mapping[str, type], optimizer: bool, n_envs: int | None) -> _Checked:
    """Every check of a safe copy before anything is allocated on its word (see :mod:`.sizes`):
    the JSON's schema, the classes it names, its sizes against the tensors in the weights file
    (a policy built on the meta device must have exactly their shapes), the memory the model
    will take, then the weights themselves, which must be finite."""
    from recurrent_rl.export.sizes import check_model_memory, check_settings, check_shapes, meta_policy, weights_header
    from recurrent_rl.nets.policies import POLICY_ALIASES, RecurrentActorCriticPolicy

    config = read_safe_config(path)
    weights_path, config_path = safe_paths(path)
    where = str(config_path)
    with _as_safe_error():
        observation_space = space_from_json(config["observation_space"], f"{where} (observation_space)")
        action_space = space_from_json(config["action_space"], f"{where} (action_space)")
        policies = {**POLICY_ALIASES, "RecurrentActorCriticPolicy": RecurrentActorCriticPolicy}
        policy_class: Any = policies.get(config["policy"])
        if policy_class is None:
            raise SafeFormatError(
                f"{where}: unknown policy {shorten(config['policy'])}; expected one of {sorted(POLICY_ALIASES)}"
            )
        header = weights_header(weights_path)
        check_settings(config["policy_kwargs"], header, where)
        policy_kwargs = from_json(config["policy_kwargs"], f"{where}: policy_kwargs", custom)
        aliases = dict(config.get("aliases", {}))
        hyper = config["hyperparameters"]
        policy = meta_policy(policy_class, observation_space, action_space, hyper["use_sde"], policy_kwargs, where)
        check_shapes(policy.state_dict(), header, aliases, weights_path, config_path.name)
        if optimizer:
            _check_optimizer(policy, config, path)
        n_envs = config["n_envs"] if n_envs is None else n_envs
        check_model_memory(
            policy,
            n_envs,
            hyper["n_steps"],
            hyper["sequence_length"],
            observation_space,
            action_space,
            optimizer,
            where,
        )
        tensors = _load_tensors(weights_path)
        _check_finite(tensors, weights_path)
    return _Checked(
        config=config,
        observation_space=observation_space,
        action_space=action_space,
        policy_class=policy_class,
        policy_kwargs=policy_kwargs,
        aliases=aliases,
        meta=policy,
        tensors=tensors,
    )


def check_safe_copy(
    path: str | Path,
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> None:
    """Every check :func:`load_safe` makes, without building the model: a safe copy (and with
    ``optimizer``, its optimizer state) that passes loads. ``recurrent-rl train --resume`` calls it
    before it writes anything."""
    checked = _check(path, _custom(custom_classes), optimizer, None)
    if optimizer:
        with _as_safe_error():
            file, data = _check_optimizer(checked.meta, checked.config, path)
            parameters = [p for group in checked.meta.optimizer.param_groups for p in group["params"]]
            optimizer_from_safe(_load_tensors(file), data, str(file), parameters)


def load_safe(
    path: str | Path,
    env: Any = None,
    device: str | th.device = "auto",
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> Any:
    """A :class:`~recurrent_rl.RecurrentPPO` rebuilt from a safe copy, without unpickling anything.

    Every field is checked first (:func:`check_safe_copy`): the schema, the classes, the sizes
    against the tensors in the weights file and against the memory this process can allocate,
    and the weights must be finite; each failure is one :class:`SafeFormatError` naming the file
    and the field.

    :param path: a folder holding ``model.safetensors`` and ``model.json``, or a prefix / either file
    :param env: the env to attach (a VecEnv, a Gymnasium env or an id), as ``RecurrentPPO.load``
        takes it; its spaces must be the model's. None: a model without env (``predict`` works)
    :param device: where the policy goes (``"auto"``: CUDA when available)
    :param custom_classes: classes outside the allow-list that the file's ``policy_kwargs`` name
    :param optimizer: also restore the optimizer's state (Adam's moments), which the copy must hold
        (``save_safe(..., optimizer=True)``; every checkpoint of a run folder does): training then
        continues as from SB3's zip
    """
    from recurrent_rl.ppo.algorithm import RecurrentPPO

    weights_path, config_path = safe_paths(path)
    where = str(config_path)
    venv = None
    if env is not None:
        venv = _wrapped_env(env)
    checked = _check(path, _custom(custom_classes), optimizer, None if venv is None else venv.num_envs)
    config, observation_space, action_space = checked.config, checked.observation_space, checked.action_space
    if venv is not None and (venv.observation_space != observation_space or venv.action_space != action_space):
        raise SafeFormatError(
            f"the model in {where} was trained on observations {describe(observation_space)} and actions "
            f"{describe(action_space)}, but the env has observations {describe(venv.observation_space)} and "
            f"actions {describe(venv.action_space)}: attach the env it was trained on"
        )
    hyper = config["hyperparameters"]
    # As SB3's load does: construct without building, set what was saved, then build.
    model = RecurrentPPO(checked.policy_class, venv, device=device, _init_setup_model=False)  # type: ignore[arg-type]
    for name in HYPERPARAMETERS:
        setattr(model, name, hyper[name])
    for name in SCHEDULES:
        setattr(model, name, _schedule_from_json(hyper[name], name))
    model._stats_window_size = hyper["stats_window_size"]
    model.num_timesteps = config["num_timesteps"]
    model._n_updates = config["n_updates"]
    model.policy_kwargs = checked.policy_kwargs
    if venv is None:
        model.observation_space, model.action_space, model.n_envs = observation_space, action_space, config["n_envs"]
    try:
        model._setup_model()
    except (ValueError, TypeError) as error:
        raise SafeFormatError(
            f"{where}: the stored settings do not build a model: {shorten(str(error), 200)}"
        ) from None
    tensors, aliases = checked.tensors, checked.aliases
    full = {name: tensors[aliases.get(name, name)] for name in model.policy.state_dict()}
    try:
        model.policy.load_state_dict(full, strict=True)
    except RuntimeError as error:
        raise SafeFormatError(f"{weights_path} does not fit the policy: {str(error).splitlines()[0]}") from None
    del full, checked
    if optimizer:
        with _as_safe_error():
            _load_optimizer(model, config, path)
    return model


def read_safe_vecnormalize(path: str | Path) -> dict[str, Any] | None:
    """The VecNormalize entry of a safe copy (None when the model was trained without VecNormalize),
    checked: settings in range, statistics finite, variances not negative, of the observations' shapes."""
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
            norm_obs=data["norm_obs"],
            norm_reward=data["norm_reward"],
            clip_obs=data["clip_obs"],
            clip_reward=data["clip_reward"],
            gamma=data["gamma"],
            epsilon=data["epsilon"],
            norm_obs_keys=data["norm_obs_keys"],
        )
    except (KeyError, ValueError, AssertionError) as error:
        raise SafeFormatError(
            f"{where}: the VecNormalize statistics do not fit this env: {shorten(str(error))}"
        ) from None
    if not normalizer.norm_obs:
        pass  # rewards only: SB3 keeps no observation statistics
    elif isinstance(normalizer.obs_rms, dict):
        missing = [key for key in normalizer.obs_rms if key not in data["obs_rms"]]
        if missing:
            raise SafeFormatError(f"{where}: the VecNormalize statistics lack the observation entry {missing[0]!r}")
        for key, rms in normalizer.obs_rms.items():
            _set_rms(rms, data["obs_rms"][key], f"{where} (VecNormalize, {key!r})")
    else:
        if isinstance(data["obs_rms"], dict) and set(data["obs_rms"]) != {"mean", "var", "count"}:
            raise SafeFormatError(f"{where}: the VecNormalize statistics are for Dict observations, the env's are not")
        _set_rms(normalizer.obs_rms, data["obs_rms"], f"{where} (VecNormalize)")
    _set_rms(normalizer.ret_rms, data["ret_rms"], f"{where} (VecNormalize returns)")
    return normalizer
