"""T-maze: remember a cue shown once, act on it at the end of a long corridor (Bakker, 2002)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recurrent_rl.envs._checks import check_float, check_int, discrete_action


class TMaze(gym.Env[np.ndarray, np.int64]):
    """A corridor of ``corridor_length`` cells ending in a junction with a left and a right arm.

    The first observation shows a cue (left or right, drawn uniformly at reset); every later
    observation only says "corridor" or "junction", so the cue must be remembered for
    ``corridor_length`` steps. Turning into the cued arm at the junction is a success.

    - Observation ``(4,)`` float32 one-hot: ``[cue_left, cue_right, corridor, junction]``. The
      cue channel is set only on the very first step; the start cell revisited later (after a
      bump) reads "corridor". The terminal observation is all zeros.
    - Actions ``Discrete(3)``: 0 forward, 1 turn left, 2 turn right. Turning in the corridor or
      moving forward at the junction bumps into a wall: the agent stays and gets
      ``-bump_penalty``, a dense nudge that teaches "go forward" without involving memory.
    - Rewards: +1 for turning into the cued arm, 0 for the other arm (episode terminates either
      way). The wrong arm gives 0, not -1, so a memoryless policy cannot gain by trading a likely
      wrong answer for a timeout; this keeps its best return at exactly 0.5.
    - Time limit: ``max_steps`` steps (default ``2 * (corridor_length + 1)``), then truncated.
    - ``info["state"]``: ``array([cue])`` with 0 = left, 1 = right. ``info["success"]`` on the
      last step of the episode.

    The optimal policy (forward ``corridor_length`` times, then turn to the cue) takes
    ``corridor_length + 1`` steps and returns exactly 1.

    :param corridor_length: forward moves from the start cell to the junction (>= 1)
    :param max_steps: time limit in steps (>= ``corridor_length + 1``)
    :param bump_penalty: cost of a move into a wall (>= 0)
    :param render_mode: ``"ansi"`` (text) or ``"rgb_array"``
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    FORWARD, LEFT, RIGHT = 0, 1, 2
    CUE_LEFT, CUE_RIGHT, CORRIDOR, JUNCTION = 0, 1, 2, 3
    _CELL = 8  # pixels per maze cell in rgb_array renders

    def __init__(
        self,
        corridor_length: int = 10,
        max_steps: int | None = None,
        bump_penalty: float = 0.01,
        render_mode: str | None = None,
    ) -> None:
        self.corridor_length = check_int("corridor_length", corridor_length, 1)
        if max_steps is None:
            max_steps = 2 * (self.corridor_length + 1)
        # below corridor_length + 1 even a perfect agent could never reach an arm
        self.max_steps = check_int("max_steps", max_steps, self.corridor_length + 1)
        self.bump_penalty = check_float("bump_penalty", bump_penalty, 0.0)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)
        self._cue = 0
        self._pos = 0
        self._t = 0
        self._arm: int | None = None  # chosen arm (0 left, 1 right) once the episode has ended
        self._done = True

    def _observation(self) -> np.ndarray:
        obs = np.zeros(4, dtype=np.float32)
        if self._arm is not None:
            return obs  # terminal: nothing left to see
        if self._t == 0:
            obs[self.CUE_LEFT + self._cue] = 1.0
        elif self._pos == self.corridor_length:
            obs[self.JUNCTION] = 1.0
        else:
            obs[self.CORRIDOR] = 1.0
        return obs

    def _info(self) -> dict[str, Any]:
        return {"state": np.array([self._cue], dtype=np.int64)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode with a fresh cue (uniform left/right from the seeded RNG)."""
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(2))
        self._pos, self._t, self._arm, self._done = 0, 0, None, False
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move forward or turn; see the class docstring for the rewards."""
        if self._done:
            raise RuntimeError("TMaze.step() called after the episode ended; call reset() first")
        a = discrete_action(action, 3)
        reward, terminated = 0.0, False
        at_junction = self._pos == self.corridor_length
        if not at_junction and a == self.FORWARD:
            self._pos += 1
        elif at_junction and a != self.FORWARD:
            self._arm = a - self.LEFT
            terminated = True
            reward = 1.0 if self._arm == self._cue else 0.0
        else:
            reward = -self.bump_penalty  # a wall: stay in place
        self._t += 1
        truncated = not terminated and self._t >= self.max_steps
        self._done = terminated or truncated
        info = self._info()
        if self._done:
            info["success"] = self._arm == self._cue
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        """Text (``"ansi"``) or image (``"rgb_array"``) of the whole maze, including the cue."""
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        return None

    def _render_text(self) -> str:
        length = self.corridor_length
        rows = [[" "] * (length + 1) for _ in range(3)]
        rows[1] = ["S"] + ["."] * (length - 1) + ["J"]
        rows[0][length], rows[2][length] = "L", "R"
        if self._arm is None:
            rows[1][self._pos] = "@"
        else:
            rows[0 if self._arm == 0 else 2][length] = "@"
        side = "left" if self._cue == 0 else "right"
        header = f"t={self._t}/{self.max_steps} cue={side} (S start, J junction, L/R arms, @ agent)"
        return "\n".join([header] + ["".join(r).rstrip() for r in rows]) + "\n"

    def _render_rgb(self) -> np.ndarray:
        c, length = self._CELL, self.corridor_length
        img = np.zeros((3 * c, (length + 1) * c, 3), dtype=np.uint8)  # (H, W, RGB), walls black

        def fill(row: int, col: int, color: tuple[int, int, int], margin: int = 0) -> None:
            img[row * c + margin : (row + 1) * c - margin, col * c + margin : (col + 1) * c - margin] = color

        for col in range(length + 1):
            fill(1, col, (128, 128, 128))
        fill(1, 0, (60, 60, 200))  # start cell, where the cue is shown
        good, bad = (40, 180, 40), (180, 40, 40)
        fill(0, length, good if self._cue == 0 else bad)
        fill(2, length, good if self._cue == 1 else bad)
        row, col = (1, self._pos) if self._arm is None else (0 if self._arm == 0 else 2, length)
        fill(row, col, (255, 255, 255), margin=c // 4)
        return img
