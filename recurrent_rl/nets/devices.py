"""What ``device="auto"`` means for a recurrent policy, and why: :func:`choose_device`.

SB3's ``auto`` is CUDA whenever torch sees a GPU. For the policies this package is tuned for
(vector observations, memories of 64-128 units, 8-16 envs) that is the slower choice: an env step
of the rollout runs the policy on a batch of a few envs, some 30 small kernels whose launch and
the device-to-host copy of the actions cost a GPU a fixed ~0.1-0.3 ms, while the CPU speed backend
(``backend="auto"`` on the CPU takes it) computes the whole step in about that time or less
(``python -m benchmarks.devices`` prints the CPU's per-step cost here; the README's benchmark
figures were all taken with it). And on CUDA the speed backend does not apply at all. SB3 warns
the same for its MLP PPO ("PPO is primarily intended to run on the CPU when not using a CNN
policy").

The rule (:func:`choose_device`), when torch sees a CUDA device:

- image observations (a CNN features extractor): CUDA; a convolution over a batch of frames is
  the work a GPU is made for, and what SB3 recommends it for;
- memories of :data:`LARGE_MEMORY` units or more: CUDA; the CPU's cost of a step grows with the
  square of the width (a 256-unit GRU does 16 times the work of a 64-unit one per env), the
  GPU's stays near its fixed cost;
- anything else: the CPU, with its speed backend.

Without CUDA it is the CPU. ``python -m benchmarks.devices`` (run by ``scripts/gpu_check.sh``)
measures both sides of the rule where a GPU is present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import NatureCNN

LARGE_MEMORY = 256  # units of memory from which auto trains on CUDA (the rule above)
DEFAULT_HIDDEN_SIZE = 64  # the policies' default hidden_size (RecurrentActorCriticPolicy)


@dataclass(frozen=True)
class DeviceChoice:
    """Where ``auto`` trains, and the reason in words (the run's first lines print both)."""

    device: th.device
    reason: str

    def line(self) -> str:
        return f"device: {self.device} (auto: {self.reason})"


def has_images(observation_space: spaces.Space, policy_kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether the policy reads image observations (itself or in a Dict) or names a CNN."""
    kwargs = dict(policy_kwargs or {})
    if kwargs.get("features_extractor_class") is NatureCNN:
        return True
    normalized = not kwargs.get("normalize_images", True)
    parts = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
    return any(isinstance(s, spaces.Box) and is_image_space(s, normalized_image=normalized) for s in parts)


def choose_device(
    observation_space: spaces.Space | None,
    policy_kwargs: Mapping[str, Any] | None = None,
    cuda: bool | None = None,
) -> DeviceChoice:
    """The device ``auto`` stands for (see the module docstring for the rule and its reasons).

    :param observation_space: the policy's (None: unknown, taken as vector observations)
    :param policy_kwargs: the policy's options (``hidden_size``, ``features_extractor_class``)
    :param cuda: whether a CUDA device is usable (None: ask torch)
    """
    cuda = th.cuda.is_available() if cuda is None else cuda
    if not cuda:
        return DeviceChoice(th.device("cpu"), "no CUDA device here")
    kwargs = dict(policy_kwargs or {})
    if observation_space is not None and has_images(observation_space, kwargs):
        return DeviceChoice(th.device("cuda"), "image observations: the CNN runs faster on the GPU")
    hidden = int(kwargs.get("hidden_size", DEFAULT_HIDDEN_SIZE))
    if hidden >= LARGE_MEMORY:
        return DeviceChoice(th.device("cuda"), f"{hidden}-unit memories (>= {LARGE_MEMORY}) run faster on the GPU")
    return DeviceChoice(
        th.device("cpu"),
        f"vector observations and {hidden}-unit memories train faster on the CPU speed backend than on "
        f"the GPU torch sees; set device: cuda (--device cuda) to use it",
    )
