"""VisitAll: visit every cell of a corridor once, with action masks that forbid walls only."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recurrent_rl.envs._checks import check_int, discrete_action

LEFT, RIGHT = 0, 1


class VisitAll(gym.Env[np.ndarray, np.int64]):
    """A corridor of ``length`` cells; the agent starts in a uniformly drawn cell and earns +1 for
    each cell it enters for the first time. The episode ends when every cell has been visited
    (terminated) or after ``max_steps`` steps (truncated).

    - Observation ``(2,)`` float32: ``[wall_left, wall_right]``, whether the current cell is an
      end of the corridor. Every inner cell looks the same, and nothing says which cells were
      visited: the agent must remember where it has been and which way it is going.
    - Actions ``Discrete(2)``: 0 left, 1 right. A move into a wall leaves the agent where it is.
    - ``action_masks()``: ``(2,)`` bool, False for the move into a wall (sb3-contrib's
      ``MaskablePPO`` convention). Revisits are allowed: the mask does not remember for the agent.
    - ``info["state"]``: the visited cells, ``(length,)`` int64 0/1.

    With memory, "go one way to its end, then back to the other end" visits every cell from any
    start in at most ``2 * length - 3`` steps: the optimal return is ``length - 1`` exactly.
    ``recurrent_rl.envs.reference.visit_all_reference`` gives the exact uniform-random and best
    memoryless returns.

    :param length: cells in the corridor (>= 3)
    :param max_steps: time limit (>= ``2 * length - 3``; default ``2 * length``)
    :param render_mode: ``"ansi"`` (text), ``"rgb_array"`` or None
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _CELL = 8  # pixels per cell in rgb_array renders

    def __init__(self, length: int = 8, max_steps: int | None = None, render_mode: str | None = None):
        self.length = check_int("length", length, 3)
        # below 2 * length - 3 even a perfect agent could miss a cell from some starts
        self.max_steps = check_int(
            "max_steps", 2 * self.length if max_steps is None else max_steps, 2 * self.length - 3
        )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._pos = 0
        self._visited = np.zeros(self.length, dtype=np.int64)
        self._t = 0

    def _observation(self) -> np.ndarray:
        return np.array([self._pos == 0, self._pos == self.length - 1], dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        return {"state": self._visited.copy()}

    def action_masks(self) -> np.ndarray:
        """False for the move into a wall, True for the other (revisits included)."""
        return np.array([self._pos > 0, self._pos < self.length - 1], dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = int(self.np_random.integers(self.length))
        self._visited[:] = 0
        self._visited[self._pos] = 1
        self._t = 0
        return self._observation(), self._info()

    def step(self, action: Any):
        a = discrete_action(action, 2)
        self._pos = min(max(self._pos + (1 if a == RIGHT else -1), 0), self.length - 1)
        reward = 0.0 if self._visited[self._pos] else 1.0
        self._visited[self._pos] = 1
        self._t += 1
        terminated = bool(self._visited.all())
        truncated = not terminated and self._t >= self.max_steps
        info = self._info()
        if terminated or truncated:
            info["success"] = terminated
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> Any:
        if self.render_mode == "ansi":
            return "".join("A" if i == self._pos else ("." if v else "#") for i, v in enumerate(self._visited))
        if self.render_mode == "rgb_array":
            # unvisited dark grey, visited light grey, the agent blue; (CELL, CELL * length, 3) uint8
            colours = np.where(self._visited[:, None] > 0, 200, 60).astype(np.uint8).repeat(3, axis=1)
            colours[self._pos] = (40, 90, 220)
            row = colours.repeat(self._CELL, axis=0)  # (CELL * length, 3)
            return np.ascontiguousarray(np.broadcast_to(row, (self._CELL, *row.shape)))
        return None
