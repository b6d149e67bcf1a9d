"""What an exported acting graph takes and gives, and what its file says about itself.

:func:`graph_signature` names the graph's inputs and outputs (observation entries, ``episode_start``, the
memory's ``state.*`` and ``next_state.*``, the action, the value and distribution parameters when
asked for) with their dtypes, shapes and dynamic batch axes; :func:`metadata` is the JSON entry
``recurrent_rl`` of the file's ``metadata_props`` (the spaces, the memory, that signature, how to
reset, the folded VecNormalize, the versions) that :mod:`recurrent_rl.export.play` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.distributions import MultiCategoricalDistribution
from stable_baselines3.common.preprocessing import is_image_space

from recurrent_rl.export.format import FORMAT, FORMAT_VERSION
from recurrent_rl.export.graph import ObsNormalization, distribution_output_names, input_dtype
from recurrent_rl.io.spaces import space_to_json
from recurrent_rl.versions import package_versions


@dataclass
class Signature:
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    description: dict[str, Any]


def dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name


def graph_signature(policy: Any, include_value: bool, include_distribution: bool) -> Signature:
    space = policy.observation_space
    obs_entries: list[dict[str, Any]] = []
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            obs_entries.append(
                {
                    "name": f"obs.{key}",
                    "key": key,
                    "dtype": dtype_name(input_dtype(sub)),
                    "shape": ["batch", *obs_shape(sub)],
                }
            )
    else:
        obs_entries.append(
            {
                "name": "obs",
                "key": None,
                "dtype": dtype_name(input_dtype(space)),
                "shape": ["batch", *obs_shape(space)],
            }
        )
    states: list[dict[str, Any]] = []
    cores = [("actor", policy.actor_memory)]
    if include_value and policy.critic_core is not None:
        cores.append(("critic", policy.critic_core))
    for role, core in cores:
        for index, shape in enumerate(core.state_shapes(1)):
            states.append(
                {
                    "name": f"state.{role}.{index}",
                    "output": f"next_state.{role}.{index}",
                    "role": role,
                    "index": index,
                    "dtype": "float32",
                    "shape": [shape[0], "batch", *shape[2:]],
                }
            )
    action_space = policy.action_space
    action_dtype = "int64" if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete)) else "float32"
    outputs: list[dict[str, Any]] = [{"name": "action", "dtype": action_dtype, "shape": ["batch", *action_space.shape]}]
    outputs += [
        {"name": s["output"], "dtype": "float32", "shape": s["shape"], "state": s["name"]}
        for s in states
        if s["role"] == "actor"
    ]
    if include_value:
        outputs += [
            {"name": s["output"], "dtype": "float32", "shape": s["shape"], "state": s["name"]}
            for s in states
            if s["role"] == "critic"
        ]
        outputs.append({"name": "value", "dtype": "float32", "shape": ["batch"]})
    if include_distribution:
        width = (
            int(sum(policy.action_dist.action_dims))
            if isinstance(policy.action_dist, MultiCategoricalDistribution)
            else int(policy.action_net.out_features)
        )
        outputs += [
            {"name": name, "dtype": "float32", "shape": ["batch", width]} for name in distribution_output_names(policy)
        ]
    input_names = [e["name"] for e in obs_entries] + ["episode_start"] + [s["name"] for s in states]
    output_names = [o["name"] for o in outputs]
    dynamic_axes = {e["name"]: {0: "batch"} for e in obs_entries}
    dynamic_axes["episode_start"] = {0: "batch"}
    for s in states:
        dynamic_axes[s["name"]] = {1: "batch"}
    for o in outputs:
        dynamic_axes[o["name"]] = {o["shape"].index("batch"): "batch"}
    description = {
        "obs": obs_entries,
        "episode_start": {
            "name": "episode_start",
            "dtype": "float32",
            "shape": ["batch"],
            "meaning": "1 where the env starts an episode at this step: its memory is reset to zeros "
            "first; 0 to keep it",
        },
        "states": states,
        "outputs": outputs,
    }
    return Signature(input_names, output_names, dynamic_axes, description)


def obs_shape(space: spaces.Space) -> list[int]:
    if isinstance(space, spaces.Discrete):
        return []  # predict reshapes a Discrete observation to (B,)
    return [int(s) for s in space.shape or ()]


def metadata(
    policy: Any,
    signature: Signature,
    normalization: dict[str | None, ObsNormalization],
    include_value: bool,
    include_distribution: bool,
    opset: int,
    env_id: str | None,
) -> dict[str, Any]:
    core = policy.actor_memory
    action_space = policy.action_space
    if isinstance(action_space, spaces.Box):
        post = (
            "unscaled from [-1, 1] to the action space (tanh-squashed)"
            if policy.squash_output
            else "the distribution's mean, clipped to the action space's bounds"
        )
    elif isinstance(action_space, spaces.MultiBinary):
        post = "round(sigmoid(logits)) per entry"
    else:
        post = "argmax of the action probabilities (per entry for MultiDiscrete)"
    first = next(iter(normalization.values()), None)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "env_id": env_id,
        "observation_space": space_to_json(policy.observation_space),
        "action_space": space_to_json(action_space),
        "memory": {
            "type": core.memory,
            "hidden_size": int(core.hidden_size),
            "num_layers": int(core.num_layers),
            "memory_kwargs": dict(core.memory_kwargs),
            "critic_memory": policy.critic_memory,
        },
        **signature.description,
        "reset": "at the first step: every state.* input zeros of its shape (with the batch size), and "
        "episode_start = 1; after that feed each next_state.* output back as the state.* input of the same "
        "name; episode_start = 1 for the envs whose episode starts at that step",
        "deterministic_action": post,
        "vecnormalize": None
        if first is None
        else {
            "folded": True,
            "keys": [k for k in normalization if k is not None] or None,
            "clip_obs": first.clip_obs,
            "epsilon": first.epsilon,
            "note": "the graph normalises raw observations itself: feed them as the env gives them",
        },
        "image_layout": "channel-first (C, H, W): transpose channel-last frames (H, W, C) to (C, H, W)"
        if has_image(policy.observation_space)
        else None,
        "include_value": include_value,
        "include_distribution": include_distribution,
        "opset": opset,
        "versions": package_versions("onnx"),
    }


def has_image(space: spaces.Space) -> bool:
    if isinstance(space, spaces.Dict):
        return any(has_image(sub) for sub in space.spaces.values())
    return isinstance(space, spaces.Box) and is_image_space(space)
