"""The optimizer's state in the weights-only format: ``<prefix>.optimizer.safetensors`` holds its
tensors (Adam's moments and step counters), the ``optimizer`` entry of ``<prefix>.json`` its
class, parameter groups and the file's SHA-256. Read back only for the optimizer class the
rebuilt policy trains with, with the same parameter groups, finite moments of their parameters'
shapes.

May import: :mod:`recurrent_rl.io.values`, :mod:`recurrent_rl.io.schema`, the leaf modules; torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch as th

from recurrent_rl.io.schema import check_optimizer_entry
from recurrent_rl.io.values import (
    SAME_OPTIMIZER,
    SafeFormatError,
    class_name,
    from_json,
    load_tensors,
    sha256,
    to_json,
)
from recurrent_rl.received import shorten

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
    return tensors, {"class": class_name(type(optimizer)), "param_groups": groups, "state_values": values}


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


def check_optimizer(policy: Any, data: Any, file: Path, where: str) -> tuple[Path, dict[str, Any]]:
    """The optimizer file of a safe copy (``file``) and its JSON entry (``data``, the ``optimizer``
    entry of ``where``), checked against ``policy`` (a meta policy will do): the class the policy's
    optimizer has, the same parameter groups, the file's SHA-256."""
    if not isinstance(data, dict) or not file.is_file():
        raise SafeFormatError(
            f"{where} was saved without its optimizer state ({file.name}): it acts and trains, but cannot continue "
            "a training with Adam's moments. Load it with optimizer=False"
        )
    expected = class_name(type(policy.optimizer))
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
    if sha256(file) != data.get("sha256"):
        raise SafeFormatError(
            f"{file} is not the optimizer state {Path(where).name} was written with (damaged, truncated, or "
            "replaced): refused"
        )
    return file, data


def load_optimizer(model: Any, data: Any, file: Path, where: str) -> None:
    """Restore ``model``'s optimizer from a safe copy's optimizer file, checked as :func:`check_optimizer` checks it."""
    file, data = check_optimizer(model.policy, data, file, where)
    parameters = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
    state_dict = optimizer_from_safe(load_tensors(file), data, str(file), parameters)
    try:
        model.policy.optimizer.load_state_dict(state_dict)
    except (ValueError, KeyError, RuntimeError, TypeError) as error:
        raise SafeFormatError(f"{file} does not fit the policy's optimizer: {shorten(str(error), 200)}") from None
