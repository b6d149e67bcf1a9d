"""A test env for every observation and action space."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SpacesEnv(gym.Env):
    """Random observations from any space; reward 1 when the action equals a stored sample.

    Episodes last ``ep_length`` steps and end by truncation (a time limit).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, ep_length: int = 12):
        self.observation_space = observation_space
        self.action_space = action_space
        self.ep_length = ep_length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        reward = float(np.mean(np.asarray(action, dtype=np.float64) > 0))
        return self.observation_space.sample(), reward, False, self.t >= self.ep_length, {}


IMAGE = spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)
OBSERVATION_SPACES = {
    "box": spaces.Box(-1, 1, (3,), dtype=np.float32),
    "image": IMAGE,
    "discrete": spaces.Discrete(5),
    "multidiscrete": spaces.MultiDiscrete([3, 4]),
    "multibinary": spaces.MultiBinary(4),
    "dict": spaces.Dict({"vec": spaces.Box(-1, 1, (2,), dtype=np.float32), "img": IMAGE, "d": spaces.Discrete(3)}),
}
ACTION_SPACES = {
    "discrete": spaces.Discrete(3),
    "box": spaces.Box(-1, 1, (2,), dtype=np.float32),
    "multidiscrete": spaces.MultiDiscrete([2, 3]),
    "multibinary": spaces.MultiBinary(3),
}
