"""Wrappers that make an env partially observable."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MaskObservation(gym.ObservationWrapper):
    """Zero chosen dimensions of a flat Box observation (the shape and bounds stay the same).

    Zeroing rather than removing keeps the same observation space as rl-baselines3-zoo's
    ``*NoVel-v1`` envs, so presets tuned there transfer unchanged.

    :param indices: the dimensions to hide
    """

    def __init__(self, env: gym.Env, indices: Sequence[int]):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"MaskObservation needs a flat Box observation space, got {space}")
        size = space.shape[0]
        bad = [i for i in indices if not isinstance(i, (int, np.integer)) or not -size <= i < size]
        if bad:
            raise ValueError(f"indices {bad} do not exist in an observation of size {size}; valid range is 0..{size - 1}")
        self.indices = np.array(sorted({int(i) % size for i in indices}), dtype=np.int64)
        self._keep = np.ones(size, dtype=space.dtype)
        self._keep[self.indices] = 0
        # hidden dimensions read 0: widen their bounds to hold it, keep the rest as they are
        low = np.where(self._keep == 1, space.low, np.minimum(space.low, 0)).astype(space.dtype)
        high = np.where(self._keep == 1, space.high, np.maximum(space.high, 0)).astype(space.dtype)
        self.observation_space = spaces.Box(low=low, high=high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self._keep
