"""Plain data of the weights-only format: classes, schedules and VecNormalize statistics as JSON,
and the tensor files (read with a memory check, hashed, checked finite).

A class is stored as ``{"__class__": "module:qualname"}`` and read back only from the allow-list
(:data:`ALLOWED_MODULES`, and by key: activations, first-order optimizers, features extractors)
or from the caller's ``custom_classes``: reading a class name never imports a module the file chose.

May import: the leaf modules (``received``, ``schedules``); torch, NumPy, SB3.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch as th
from torch import nn

from recurrent_rl.received import ReceivedFileError, check_memory, cut, shorten
from recurrent_rl.schedules import Linear

# where the classes named in policy_kwargs may come from
ALLOWED_MODULES = ("torch.nn", "torch.optim", "stable_baselines3", "recurrent_rl")
_MARKERS = ("__class__", "__tuple__")

# the classes a received policy_kwargs may name, by key (any class of custom_classes anywhere)
CLASS_KEYS = ("activation_fn", "optimizer_class", "features_extractor_class")
# torch.optim's optimizers that step on dense gradients without a closure (not LBFGS, SparseAdam)
OPTIMIZERS = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SGD", "RMSprop", "Adagrad", "Adadelta", "ASGD", "Rprop")
# the same update under two names: the speed backend's Adam is torch's fused Adam (accel.optim)
SAME_OPTIMIZER = {"recurrent_rl.accel.optim:PolicyAdam": "torch.optim:Adam"}


class SafeFormatError(ReceivedFileError):
    """A safe model file that cannot be written or read as asked."""


class as_safe_error:
    """Turn the refusals of the shared checks (:mod:`recurrent_rl.received`, the spaces) into
    :class:`SafeFormatError`, so the loaders raise one kind of error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> Literal[False]:
        if isinstance(error, ReceivedFileError) and not isinstance(error, SafeFormatError):
            raise SafeFormatError(str(error)) from None
        return False


# --- JSON for policy_kwargs ---------------------------------------------------------------------------


def class_name(cls: type) -> str:
    """``module:qualname``, preferring the public ``torch.nn`` / ``torch.optim`` name."""
    for public in ("torch.nn", "torch.optim"):
        if getattr(importlib.import_module(public), cls.__name__, None) is cls:
            return f"{public}:{cls.__name__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed_class(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, (nn.Module, th.optim.Optimizer))


def _allowed_module(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ALLOWED_MODULES)


def custom_classes_map(custom_classes: Mapping[str, type] | Iterable[type] | None) -> dict[str, type]:
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
        name = class_name(value)
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


def schedule_to_json(value: Any, name: str, model: Any) -> Any:
    """A learning-rate / clip-range setting: a number, ``{"schedule": ...}`` for the known
    schedules, or the value now of any other function (with a warning)."""
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    if isinstance(value, FloatSchedule):
        value = value.value_schedule
    if isinstance(value, ConstantSchedule):
        value = value.val
    if value is None or isinstance(value, (int, float, np.number)):
        return None if value is None else float(value)
    if isinstance(value, Linear):
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


def schedule_from_json(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, dict) and value.get("schedule") == "linear":
        return Linear(float(value["initial"]))
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


def set_rms(rms: Any, data: dict[str, Any], where: str) -> None:
    mean, var = np.asarray(data["mean"], dtype=np.float64), np.asarray(data["var"], dtype=np.float64)
    if mean.shape != np.shape(rms.mean) or var.shape != np.shape(rms.var):
        raise SafeFormatError(
            f"{where}: statistics of shape {mean.shape} for observations of shape {np.shape(rms.mean)}"
        )
    rms.mean, rms.var, rms.count = mean, var, float(data["count"])


# --- tensor files ------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tensors(path: Path) -> dict[str, th.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_memory(2 * path.stat().st_size, "reading these tensors", str(path))
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise SafeFormatError(f"{path} is not a readable safetensors file: {shorten(str(error), 200)}") from None


def check_finite(tensors: Mapping[str, th.Tensor], path: Path) -> None:
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise SafeFormatError(
                f"{path}: the tensor {shorten(name)} holds nan or inf: these weights cannot act or train, refused"
            )
