"""The sizes a received model asks for, checked against its weights and this process's memory first.

A safe copy's ``model.json`` names sizes (``hidden_size``, ``num_layers``, ``net_arch``,
``memory_kwargs``, the spaces, ``n_envs``, ``n_steps``) that the loader would hand to torch and
NumPy. Trusted, ``hidden_size: 200000`` asks torch for hundreds of gigabytes before a single
weight is read. So, before anything is allocated:

1. :func:`weights_header` reads the names, dtypes and shapes of the tensors in the weights file
   from its header (safetensors checks that the file holds every byte the header promises);
2. :func:`check_settings` bounds every integer of ``policy_kwargs`` by the number of weights in
   the file and every list by the number of tensors (a model cannot have a layer wider than all
   its weights together), so that step 3 stays small;
3. :func:`meta_policy` builds the policy on PyTorch's ``meta`` device, which records shapes and
   allocates nothing, and :func:`check_shapes` requires every tensor it would hold to be in the
   file with the same shape and dtype: a hidden size must match the tensors;
4. :func:`model_bytes` estimates what loading allocates (weights, their copy while loading, the
   optimizer's moments, the rollout buffer of ``n_steps x n_envs`` observations and the memory
   states), and :func:`recurrent_rl.received.check_memory` refuses it above what this process can
   allocate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch as th
from gymnasium import spaces

from recurrent_rl.received import ReceivedFileError, check_memory, cut, shorten

MAX_TENSORS = 100_000  # tensors in one weights file (a policy has tens to hundreds)
# the keys of policy_kwargs that count layers: at most one per tensor of the file
LAYER_COUNTS = ("num_layers", "n_lstm_layers")
DTYPES = {
    "F64": th.float64,
    "F32": th.float32,
    "F16": th.float16,
    "BF16": th.bfloat16,
    "I64": th.int64,
    "I32": th.int32,
    "I16": th.int16,
    "I8": th.int8,
    "U8": th.uint8,
    "BOOL": th.bool,
}
SCALARS_PER_STEP = 7  # SB3's rollout buffer: reward, return, episode start, value, log-prob, advantage (+ slack)


def weights_header(path: Path) -> dict[str, tuple[th.dtype, tuple[int, ...]]]:
    """name -> (dtype, shape) of every tensor in a safetensors file, read from its header only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            names = list(file.keys())
            if len(names) > MAX_TENSORS:
                raise ReceivedFileError(f"{path} holds {len(names):,} tensors, more than a policy has")
            header = {}
            for name in names:
                tensor = file.get_slice(name)
                dtype = DTYPES.get(tensor.get_dtype())
                if dtype is None:
                    raise ReceivedFileError(f"{path}: the tensor {shorten(name)} has the dtype {tensor.get_dtype()}")
                header[name] = (dtype, tuple(int(d) for d in tensor.get_shape()))
    except (SafetensorError, OSError, ValueError) as error:
        if isinstance(error, ReceivedFileError):
            raise
        raise ReceivedFileError(f"{path} is not a readable safetensors file: {shorten(str(error), 200)}") from None
    return header


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def check_settings(policy_kwargs: Any, header: Mapping[str, tuple[th.dtype, tuple[int, ...]]], where: str) -> None:
    """Every integer in ``policy_kwargs`` (the JSON) at most the number of weights in the file, every
    list at most as long as the file has tensors, layer counts at most the number of tensors."""
    total = sum(_elements(shape) for _, shape in header.values())
    tensors = max(len(header), 1)
    stack: list[tuple[str, Any]] = [("policy_kwargs", policy_kwargs)]
    while stack:
        field, value = stack.pop()
        key = field.rsplit(".", 1)[-1]
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            limit = tensors if key in LAYER_COUNTS else total
            if value > limit:
                held = f"{tensors} tensors" if key in LAYER_COUNTS else f"{total:,} weights"
                raise ReceivedFileError(
                    f"{where} ({field}) is {shorten(value)}, but its weights file holds {held} in all: the size does "
                    "not match the weights"
                )
        elif isinstance(value, list):
            if len(value) > max(tensors, 8):
                raise ReceivedFileError(
                    f"{where} ({field}) has {len(value):,} entries for a weights file of {tensors} tensors"
                )
            stack.extend((f"{field}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, dict):
            stack.extend((f"{field}.{cut(str(name))}", item) for name, item in value.items())


def meta_policy(
    policy_class: Any,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    use_sde: bool,
    policy_kwargs: dict[str, Any],
    where: str,
) -> Any:
    """The policy these settings build, on the ``meta`` device (shapes only, no memory), as
    SB3's ``OnPolicyAlgorithm._setup_model`` builds it; any failure is the file's."""
    try:
        with th.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # SB3's off-policy algorithms keep use_sde inside policy_kwargs
            kwargs = {"use_sde": use_sde, **policy_kwargs}
            return policy_class(observation_space, action_space, lambda _: 0.0, **kwargs)
    except Exception as error:  # noqa: BLE001  settings from a file fail in every way a constructor can
        first = (str(error).strip().splitlines() or [""])[0]
        raise ReceivedFileError(
            f"{where}: the stored settings do not build a policy ({type(error).__name__}: {shorten(first, 200)})"
        ) from None


def check_shapes(
    expected: Mapping[str, th.Tensor],
    header: Mapping[str, tuple[th.dtype, tuple[int, ...]]],
    aliases: Mapping[str, str],
    weights_path: Path,
    config_name: str,
) -> None:
    """Every tensor of ``expected`` (a meta policy's ``state_dict``) in the file, under its name or
    its alias, with its shape and dtype; no tensor of the file left over."""
    missing = sorted(name for name in expected if (aliases.get(name, name)) not in header)
    unexpected = sorted(set(header) - set(expected))
    if missing or unexpected:
        raise ReceivedFileError(
            f"{weights_path} does not fit the policy in {config_name}: missing {shorten(missing[:5])}, unexpected "
            f"{shorten(unexpected[:5])}"
        )
    for name, tensor in expected.items():
        dtype, shape = header[aliases.get(name, name)]
        if shape != tuple(tensor.shape) or dtype != tensor.dtype:
            raise ReceivedFileError(
                f"{weights_path} does not fit the policy in {config_name}: {shorten(name)} is {shorten(list(shape))} "
                f"{str(dtype).removeprefix('torch.')} in the file, the settings make it {list(tensor.shape)} "
                f"{str(tensor.dtype).removeprefix('torch.')} (a size in {config_name} does not match the weights)"
            )


def _floats_per_step(space: spaces.Space) -> int:
    """Values SB3's rollout buffer stores per env and step for an observation or action of ``space``."""
    if isinstance(space, spaces.Dict):
        return sum(_floats_per_step(sub) for sub in space.spaces.values())
    if isinstance(space, spaces.Discrete):
        return 1
    if isinstance(space, spaces.MultiDiscrete):
        return int(space.nvec.size)
    return _elements(tuple(int(d) for d in space.shape or ()))


def _state_elements(policy: Any) -> int:
    """Values of the memory state of one env (actor and critic; RecurrentSAC's policy: its encoders' cores)."""
    if hasattr(policy, "critic_target"):
        cores = [policy.actor.encoder.core, policy.critic.encoder.core if policy.critic_memory == "separate" else None]
    else:
        cores = [policy.actor_memory, getattr(policy, "critic_core", None)]
    return sum(_elements(tuple(shape)) for core in cores if core is not None for shape in core.state_shapes(1))


def model_bytes(
    policy: Any,
    n_envs: int,
    n_steps: int,
    sequence_length: int,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    optimizer: bool,
) -> int:
    """About the most memory loading the model takes, from the meta ``policy`` and the settings:

    - the weights 3 times (the policy's, the file's while they are copied in, a spare while the
      optimizer is rebuilt), 3 more with the optimizer (Adam's two moments, the file's copy);
    - the rollout buffer, twice (SB3's arrays and the chunks the update makes of them):
      ``n_steps x n_envs`` steps of the observation, the action and the per-step scalars, float32;
    - the memory state of every env at every chunk start, and once more for the current step.
    """
    weights = sum(_elements(tuple(t.shape)) * t.element_size() for t in policy.state_dict().values())
    per_step = _floats_per_step(observation_space) + _floats_per_step(action_space) + SCALARS_PER_STEP
    rollout = 2 * 4 * n_steps * n_envs * per_step
    chunks = n_steps // sequence_length + 1
    states = 4 * chunks * n_envs * _state_elements(policy)
    return weights * (6 if optimizer else 3) + rollout + states


def replay_bytes(
    policy: Any,
    buffer_size: int,
    stored_states: bool,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    optimizer: bool,
) -> int:
    """About the most memory loading a RecurrentSAC takes: the weights as :func:`model_bytes` counts
    them, and the replay buffer it allocates whole (SB3's): ``buffer_size`` steps of two
    observations, the action, the per-step scalars and, with ``stored_states``, the memory states."""
    weights = sum(_elements(tuple(t.shape)) * t.element_size() for t in policy.state_dict().values())
    per_step = 2 * _floats_per_step(observation_space) + _floats_per_step(action_space) + SCALARS_PER_STEP
    per_step += _state_elements(policy) if stored_states else 0
    return weights * (6 if optimizer else 3) + 4 * buffer_size * per_step


def check_model_memory(
    policy: Any,
    n_envs: int,
    hyper: Mapping[str, Any],
    observation_space: spaces.Space,
    action_space: spaces.Space,
    optimizer: bool,
    where: str,
) -> None:
    """:func:`model_bytes` (or :func:`replay_bytes` for a RecurrentSAC's ``hyper``) against what this
    process can allocate."""
    if "buffer_size" in hyper:
        size = hyper["buffer_size"]
        nbytes = replay_bytes(policy, size, hyper["stored_states"], observation_space, action_space, optimizer)
        check_memory(nbytes, f"the model (weights, a replay buffer of buffer_size {size:,} steps)", where)
        return
    n_steps, sequence_length = hyper["n_steps"], hyper["sequence_length"]
    nbytes = model_bytes(policy, n_envs, n_steps, sequence_length, observation_space, action_space, optimizer)
    check_memory(
        nbytes,
        f"the model (weights, a rollout buffer of n_steps {n_steps:,} x n_envs {n_envs:,} steps, memory states)",
        where,
    )
