"""RecurrentPPO rebuilt from its weights-only copy (``model.safetensors`` + ``model.json``).

:func:`load_safe_model` is what ``RecurrentPPO.load_safe`` (and ``MaskableRecurrentPPO.load_safe``)
runs: every field of the copy is checked first (:func:`recurrent_rl.io.safe.check_safe_model`: the
schema, the classes, the sizes against the tensors in the weights file and against the memory this
process can allocate, finite weights), then the model is built as SB3's ``load`` builds it
(construct without building, set what was saved, build) and the weights are loaded into it with
``load_state_dict``: no ``pickle``, ``torch.load`` or SB3 ``load`` is ever called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch as th

from recurrent_rl.io.optimizer import load_optimizer
from recurrent_rl.io.safe import (
    HYPERPARAMETERS,
    OPTIONAL_HYPERPARAMETERS,
    SCHEDULES,
    build_with_weights,
    check_for_env,
    optimizer_path,
    restore_counters,
    safe_paths,
)
from recurrent_rl.io.values import as_safe_error, schedule_from_json


def load_safe_model(
    cls: Any,
    path: str | Path,
    env: Any = None,
    device: str | th.device = "auto",
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
) -> Any:
    """A ``cls`` (:class:`~recurrent_rl.RecurrentPPO` or a subclass) rebuilt from the safe copy at ``path``.

    :param path: a folder holding ``model.safetensors`` and ``model.json``, or a prefix / either file
    :param env: the env to attach (a VecEnv, a Gymnasium env or an id), as ``RecurrentPPO.load``
        takes it; its spaces must be the model's. None: a model without env (``predict`` works)
    :param device: where the policy goes (``"auto"``: CUDA when available)
    :param custom_classes: classes outside the allow-list that the file's ``policy_kwargs`` name
    :param optimizer: also restore the optimizer's state (Adam's moments), which the copy must hold
        (``save_safe(..., optimizer=True)``; every checkpoint of a run folder does): training then
        continues as from SB3's zip
    """
    weights_path, config_path = safe_paths(path)
    where = str(config_path)
    checked, venv = check_for_env(cls, path, env, custom_classes, optimizer)
    config, hyper = checked.config, checked.config["hyperparameters"]
    # As SB3's load does: construct without building, set what was saved, then build.
    model = cls(checked.policy_class, venv, device=device, _init_setup_model=False)
    for name in HYPERPARAMETERS + tuple(name for name in OPTIONAL_HYPERPARAMETERS if name in hyper):
        setattr(model, name, hyper[name])
    for name in SCHEDULES:
        setattr(model, name, schedule_from_json(hyper[name], name))
    restore_counters(model, checked, venv)
    build_with_weights(model, checked, where, weights_path)
    del checked
    if optimizer:
        with as_safe_error():
            load_optimizer(model, config.get("optimizer"), optimizer_path(path), where)
    return model
