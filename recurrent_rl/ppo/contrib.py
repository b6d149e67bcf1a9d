"""Models saved by sb3-contrib's ``RecurrentPPO``, converted for :meth:`RecurrentPPO.load`.

An sb3-contrib zip holds SB3's usual entries with its own policy: ``lstm_actor`` (an
``nn.LSTM``), ``lstm_critic`` (the critic's LSTM) or ``critic`` (a ``Linear`` in its place), and
the same features extractor, ``mlp_extractor``, ``action_net`` and ``value_net`` as SB3's. The
conversion renames those weights into this package's LSTM policy (``actor_memory.rnn``,
``critic_core.rnn``, ``critic_projection``), reads the sizes from the weights themselves (a zip
saved with sb3-contrib's default ``lstm_hidden_size=256`` says nothing about it in its
``policy_kwargs``), keeps PyTorch's LSTM initialisation as it was (``gate_bias=0``), maps Adam's
moments parameter by parameter, and hands SB3's ``load`` a zip of this package's format. The
LSTM cells are the same ``nn.LSTM`` arithmetic, so the loaded model gives the same actions and
states from the same observations and states.

sb3-contrib need not be installed: its policy class is never unpickled (the class name is read
from the pickle's opcodes, nothing of it is executed).
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
import pickletools
import re
import warnings
import zipfile
from typing import Any

import torch as th
from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file

from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.contrib import CONTRIB_KEYS
from recurrent_rl.nets.policies import (
    CnnLstmPolicy,
    MlpLstmPolicy,
    MultiInputLstmPolicy,
    RecurrentActorCriticPolicy,
)

# sb3-contrib's recurrent policy classes (sb3_contrib/common/recurrent/policies.py) -> ours
CONTRIB_POLICIES: dict[str, type[RecurrentActorCriticPolicy]] = {
    "RecurrentActorCriticPolicy": MlpLstmPolicy,
    "RecurrentActorCriticCnnPolicy": CnnLstmPolicy,
    "RecurrentMultiInputActorCriticPolicy": MultiInputLstmPolicy,
}
# weight-name prefixes: sb3-contrib's -> ours
RENAMES = (
    ("lstm_actor.", "actor_memory.rnn."),
    ("lstm_critic.", "critic_core.rnn."),
    ("critic.", "critic_projection."),
)


def _read_zip(path: str | pathlib.Path | io.BufferedIOBase) -> bytes | None:
    """The zip's bytes (the ``.zip`` suffix added as SB3 adds it), or None when it cannot be read here."""
    if isinstance(path, (str, pathlib.Path)):
        candidate = pathlib.Path(path)
        if not candidate.exists() and candidate.suffix != ".zip":
            candidate = candidate.with_suffix(".zip")
        return candidate.read_bytes() if candidate.is_file() else None
    if hasattr(path, "read") and hasattr(path, "seek"):
        start = path.tell()
        content = path.read()
        path.seek(start)
        return content if isinstance(content, bytes) else None
    return None


def _pickled_global(serialized: str) -> tuple[str, str] | None:
    """(module, name) of the class a cloudpickle entry refers to, from its opcodes (nothing executed)."""
    strings = [arg for op, arg, _ in pickletools.genops(base64.b64decode(serialized.encode())) if isinstance(arg, str)]
    return (strings[0], strings[1]) if len(strings) >= 2 else None


def contrib_policy_name(content: bytes) -> str | None:
    """The sb3-contrib policy class named in a zip's ``data``, or None if the zip is not sb3-contrib's."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None
    entry = data.get("policy_class")
    if not isinstance(entry, dict) or not str(entry.get("__module__", "")).startswith("sb3_contrib."):
        return None
    found = _pickled_global(entry[":serialized:"]) if ":serialized:" in entry else None
    return found[1] if found else str(entry.get("__module__"))


def _rename(name: str) -> str:
    for old, new in RENAMES:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _layers(weights: dict[str, th.Tensor], prefix: str) -> int:
    return len([k for k in weights if re.fullmatch(rf"{re.escape(prefix)}weight_ih_l\d+", k)])


def convert_contrib_zip(
    path: str | pathlib.Path | io.BufferedIOBase, custom_objects: dict[str, Any] | None = None
) -> io.BytesIO | None:
    """A zip of this package's format made from an sb3-contrib ``RecurrentPPO`` zip at ``path``;
    None when ``path`` is not sb3-contrib's (SB3's own ``load`` reads it then).

    :raises UserInputError: an sb3-contrib model that is not a RecurrentPPO (MaskablePPO, QR-DQN,
        ...) or whose LSTM options have no counterpart here
    """
    content = _read_zip(path)
    if content is None:
        return None
    name = contrib_policy_name(content)
    if name is None:
        return None
    policy_class = CONTRIB_POLICIES.get(name)
    if policy_class is None:
        raise UserInputError(
            f"this zip holds an sb3-contrib model with the policy {name!r}, which is not sb3-contrib's "
            f"RecurrentPPO policy ({', '.join(CONTRIB_POLICIES)}); RecurrentPPO.load converts only those. "
            "Load it with the sb3-contrib class that saved it."
        )
    objects: dict[str, Any] = {"policy_class": policy_class, "rollout_buffer_class": None, "rollout_buffer_kwargs": {}}
    data, loaded, pytorch_variables = load_from_zip_file(
        io.BytesIO(content), device="cpu", custom_objects={**objects, **(custom_objects or {})}
    )
    assert data is not None and loaded is not None, "sb3-contrib zip without data or parameters"
    params: dict[str, Any] = dict(loaded)
    weights: dict[str, th.Tensor] = params["policy"]
    if "lstm_actor.weight_hh_l0" not in weights:
        raise UserInputError(f"this sb3-contrib zip ({name}) has no actor LSTM weights (lstm_actor.*) to convert")
    critic = "separate" if "lstm_critic.weight_ih_l0" in weights else "none" if "critic.weight" in weights else "shared"
    policy_kwargs = dict(data.get("policy_kwargs") or {})
    lstm_kwargs = dict(policy_kwargs.get("lstm_kwargs") or {})
    for key in CONTRIB_KEYS:
        policy_kwargs.pop(key, None)
    dropout = float(lstm_kwargs.pop("dropout", 0.0))
    unsupported = {k: v for k, v in lstm_kwargs.items() if not (k == "bias" and v is True)}
    if unsupported:
        raise UserInputError(
            f"this sb3-contrib model's LSTM was built with lstm_kwargs {unsupported}, which this package's LSTM "
            "core does not have (it takes dropout only): it cannot be converted"
        )
    policy_kwargs.update(
        memory="lstm",
        hidden_size=int(weights["lstm_actor.weight_hh_l0"].shape[1]),
        num_layers=_layers(weights, "lstm_actor."),
        critic_memory=critic,
        detach_critic_memory=critic == "shared",  # sb3-contrib's shared_lstm
        dropout=dropout,
        gate_bias=0.0,  # the weights carry sb3-contrib's initialisation, PyTorch's
    )

    # this package's policy, built once, names the parameters in its optimizer's order
    policy = policy_class(
        data["observation_space"],
        data["action_space"],
        lambda _: 0.0,
        use_sde=bool(data.get("use_sde", False)),
        **policy_kwargs,
    )
    ours = [n for n, _ in policy.named_parameters()]
    renamed = {_rename(k): v for k, v in weights.items()}
    missing = sorted(set(policy.state_dict()) - set(renamed))
    extra = sorted(set(renamed) - set(policy.state_dict()))
    if missing or extra:
        raise UserInputError(
            f"this sb3-contrib model ({name}) does not map onto this package's LSTM policy: "
            f"missing {missing[:6]}, unexpected {extra[:6]}"
        )
    params["policy"] = renamed
    params["policy.optimizer"] = _map_optimizer(params.get("policy.optimizer"), weights, ours, policy)

    data["policy_kwargs"] = policy_kwargs
    data["policy_class"] = policy_class
    data.pop("rollout_buffer_class", None)
    data.pop("rollout_buffer_kwargs", None)
    data.pop("_last_lstm_states", None)
    from recurrent_rl.ppo.buffers import plan_minibatches

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # learning with its sizes warns when it starts, not here
        data["sequence_length"], _ = plan_minibatches(
            int(data["n_steps"]), int(data.get("n_envs", 1)), int(data["batch_size"]), None
        )
    converted = io.BytesIO()
    save_to_zip_file(converted, data=data, params=params, pytorch_variables=pytorch_variables)
    converted.seek(0)
    return converted


def _map_optimizer(
    state: dict[str, Any] | None, weights: dict[str, th.Tensor], ours: list[str], policy: RecurrentActorCriticPolicy
) -> dict[str, Any]:
    """sb3-contrib's Adam state re-indexed into this policy's parameter order (a fresh one, with a
    warning, where the two do not match one to one)."""
    fresh = policy.optimizer.state_dict()
    # the optimizer's order is parameters()'s: the state dict's order with shared tensors once
    theirs, seen = [], set()
    for key, value in weights.items():
        if value.data_ptr() in seen:
            continue
        seen.add(value.data_ptr())
        theirs.append(_rename(key))
    groups = (state or {}).get("param_groups", [])
    if (
        state is None
        or len(groups) != 1
        or len(fresh["param_groups"]) != 1
        or sorted(theirs) != sorted(ours)
        or len(groups[0]["params"]) != len(theirs)
    ):
        warnings.warn(
            "the sb3-contrib model's optimizer state does not map onto this policy's parameters one to one: "
            "Adam's moments start afresh (the weights are converted)",
            UserWarning,
            stacklevel=3,
        )
        return fresh
    index = {name: i for i, name in enumerate(ours)}
    position = {pid: i for i, pid in enumerate(groups[0]["params"])}
    mapped = {index[theirs[position[pid]]]: value for pid, value in state["state"].items() if pid in position}
    group = dict(fresh["param_groups"][0])
    for key in ("lr", "betas", "eps", "weight_decay"):
        if key in groups[0]:
            group[key] = groups[0][key]
    return {"state": mapped, "param_groups": [group]}
