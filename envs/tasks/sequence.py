"""Symbol-sequence memory tasks: repeat-previous, repeat-first and count-recall.

Each episode is a fixed number of steps over i.i.d. uniform symbols drawn at reset from the
env's seeded RNG. At every step the agent sees one observation and answers with a Discrete
action; a correct answer on a scored step earns +1, anything else 0. The episode *terminates*
(it is not a time limit) after ``episode_length`` steps, with an all-zero final observation.

``info["state"]`` holds the hidden variable the current answer depends on (``array([x])``,
int64, -1 when there is none); on the last step ``info["success"]`` says whether every scored
step was answered correctly and ``info["accuracy"]`` gives the fraction that was.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recurrent_rl.envs._checks import check_int, discrete_action


class SequenceTask(gym.Env[np.ndarray, np.int64]):
    """Shared episode loop; subclasses draw the episode and define observations and targets."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _CELL = 16  # pixels per cell in rgb_array renders
    observation_space: spaces.Box
    action_space: spaces.Discrete

    def __init__(self, num_symbols: int, episode_length: int, num_actions: int, obs_size: int, render_mode: str | None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.num_symbols = num_symbols
        self.episode_length = episode_length
        self.observation_space = spaces.Box(0.0, 1.0, shape=(obs_size,), dtype=np.float32)
        self.action_space = spaces.Discrete(num_actions)
        self._symbols = np.zeros(episode_length, dtype=np.int64)  # (T,) symbol shown at each step
        self._t = 0
        self._scored = 0
        self._correct = 0
        self._last: tuple[int, int | None, float] | None = None  # (action, target, reward) for render
        self._done = True

    # --- hooks -------------------------------------------------------------------------------
    def _draw(self) -> None:
        """Sample the episode's hidden sequence(s) from ``self.np_random``."""
        self._symbols = self.np_random.integers(self.num_symbols, size=self.episode_length)

    def _observation(self, t: int) -> np.ndarray:
        """Observation at step ``t < episode_length``."""
        raise NotImplementedError

    def _target(self, t: int) -> int | None:
        """Correct action at step ``t``, or None if step ``t`` is not scored."""
        raise NotImplementedError

    def _state(self, t: int) -> int:
        """Hidden variable at step ``t`` (``t`` may equal ``episode_length``), -1 if undefined."""
        raise NotImplementedError

    def _describe(self, t: int) -> str:
        """One-line text of what the agent sees at step ``t``."""
        return f"symbol={self._symbols[t]}"

    # --- gymnasium API -----------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        return {"state": np.array([self._state(self._t)], dtype=np.int64)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new episode from the seeded RNG and return its first observation."""
        super().reset(seed=seed)
        self._draw()
        self._t, self._scored, self._correct, self._last, self._done = 0, 0, 0, None, False
        return self._observation(0), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the answer for the current step and move to the next symbol."""
        if self._done:
            raise RuntimeError(f"{type(self).__name__}.step() called after the episode ended; call reset() first")
        a = discrete_action(action, int(self.action_space.n))
        target = self._target(self._t)
        reward = 0.0
        if target is not None:
            self._scored += 1
            if a == target:
                self._correct += 1
                reward = 1.0
        self._last = (a, target, reward)
        self._t += 1
        terminated = self._t >= self.episode_length
        self._done = terminated
        obs = np.zeros(self.observation_space.shape, dtype=np.float32) if terminated else self._observation(self._t)
        info = self._info()
        if terminated:
            info["success"] = self._correct == self._scored
            info["accuracy"] = self._correct / self._scored
        return obs, reward, terminated, False, info

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: text of the current step, the last answer and the running score.
        ``"rgb_array"``: row 1 the observation (white = 1), row 2 the last action (green if it
        earned a reward, red otherwise, grey if unscored), row 3 the fraction answered correctly."""
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        if self.render_mode != "ansi":
            return None
        seen = self._describe(self._t) if self._t < self.episode_length else "(episode over)"
        last = (
            ""
            if self._last is None
            else f" | last action={self._last[0]} target={self._last[1]} reward={self._last[2]:g}"
        )
        return f"t={self._t}/{self.episode_length} {seen}{last} | correct {self._correct}/{self._scored}\n"

    def _render_rgb(self) -> np.ndarray:
        width = max(self.observation_space.shape[0], int(self.action_space.n))
        grid = np.zeros((3, width, 3), dtype=np.uint8)
        if self._t < self.episode_length:
            obs = self._observation(self._t)
            grid[0, : obs.shape[0]] = (obs[:, None] * 255).astype(np.uint8)
        if self._last is not None:
            action, target, reward = self._last
            grid[1, action] = (128, 128, 128) if target is None else ((0, 200, 0) if reward > 0 else (220, 0, 0))
        if self._scored:
            grid[2, : round(width * self._correct / self._scored)] = (0, 120, 255)
        return np.kron(grid, np.ones((self._CELL, self._CELL, 1), dtype=np.uint8))  # (3*CELL, width*CELL, 3)

    def _one_hot(self, index: int, size: int, extra: int = 0) -> np.ndarray:
        obs = np.zeros(size + extra, dtype=np.float32)
        obs[index] = 1.0
        return obs


class RepeatPrevious(SequenceTask):
    """Answer with the symbol seen ``delay`` steps ago.

    - Observation ``(num_symbols,)``: one-hot of the current symbol ``s_t``.
    - Action ``Discrete(num_symbols)``; at step ``t >= delay`` the answer ``s_{t-delay}`` earns +1.
      Steps ``t < delay`` are unscored.
    - Optimal return ``episode_length - delay``. The current symbol is independent of the target,
      so a memoryless policy does no better than chance: ``(episode_length - delay) / num_symbols``.
    - ``info["state"]``: the target ``s_{t-delay}`` (-1 while ``t < delay``).

    :param num_symbols: alphabet size (>= 2)
    :param delay: k, how many steps back to recall, in ``[1, episode_length - 1]``
    :param episode_length: steps per episode (>= 2)
    """

    def __init__(self, num_symbols: int = 4, delay: int = 2, episode_length: int = 32, render_mode: str | None = None):
        n = check_int("num_symbols", num_symbols, 2)
        length = check_int("episode_length", episode_length, 2)
        self.delay = check_int("delay", delay, 1, length - 1)
        super().__init__(n, length, num_actions=n, obs_size=n, render_mode=render_mode)

    def _observation(self, t: int) -> np.ndarray:
        return self._one_hot(int(self._symbols[t]), self.num_symbols)

    def _target(self, t: int) -> int | None:
        return int(self._symbols[t - self.delay]) if t >= self.delay else None

    def _state(self, t: int) -> int:
        return int(self._symbols[t - self.delay]) if t >= self.delay else -1


class RepeatFirst(SequenceTask):
    """Answer with the episode's first symbol at every step, while later symbols distract.

    - Observation ``(num_symbols + 1,)``: one-hot of the current symbol, then a flag set only on
      the first step (so "first symbol" is observable, but only once).
    - Action ``Discrete(num_symbols)``; every step is scored, the answer ``s_0`` earns +1.
    - Optimal return ``episode_length``; memoryless best ``1 + (episode_length - 1) / num_symbols``
      (copy the symbol on the flagged step, guess afterwards); random ``episode_length / num_symbols``.
    - ``info["state"]``: ``s_0``.

    :param num_symbols: alphabet size (>= 2)
    :param episode_length: steps per episode (>= 2)
    """

    def __init__(self, num_symbols: int = 4, episode_length: int = 16, render_mode: str | None = None):
        n = check_int("num_symbols", num_symbols, 2)
        length = check_int("episode_length", episode_length, 2)
        super().__init__(n, length, num_actions=n, obs_size=n + 1, render_mode=render_mode)

    def _observation(self, t: int) -> np.ndarray:
        obs = self._one_hot(int(self._symbols[t]), self.num_symbols, extra=1)
        obs[-1] = 1.0 if t == 0 else 0.0
        return obs

    def _target(self, t: int) -> int | None:
        return int(self._symbols[0])

    def _state(self, t: int) -> int:
        return int(self._symbols[0])

    def _describe(self, t: int) -> str:
        return f"symbol={self._symbols[t]}{' (first)' if t == 0 else ''}"


class CountRecall(SequenceTask):
    """Answer how many times the queried symbol has appeared so far, current step included.

    - Observation ``(2 * num_symbols,)``: one-hot of the current symbol ``s_t``, then one-hot of
      the query ``q_t`` (a fresh uniform symbol each step).
    - Action ``Discrete(max_count + 1)``; the answer ``min(#{i <= t : s_i = q_t}, max_count)``
      earns +1 at every step. Capping keeps the action space small; counts above the cap all map
      to the last action.
    - A memoryless policy sees only whether ``s_t == q_t`` (the earlier count is
      ``Binomial(t, 1/num_symbols)`` and it cannot see ``t``); its best return is computed
      exactly in :mod:`envs.reference`.
    - ``info["state"]``: the target count for the current query (-1 after the last step).

    :param num_symbols: alphabet size (>= 2)
    :param episode_length: steps per episode (>= 2)
    :param max_count: largest answer, in ``[1, episode_length]``
    """

    def __init__(
        self, num_symbols: int = 4, episode_length: int = 16, max_count: int = 8, render_mode: str | None = None
    ):
        n = check_int("num_symbols", num_symbols, 2)
        length = check_int("episode_length", episode_length, 2)
        self.max_count = check_int("max_count", max_count, 1, length)
        super().__init__(n, length, num_actions=self.max_count + 1, obs_size=2 * n, render_mode=render_mode)
        self._queries = np.zeros(length, dtype=np.int64)  # (T,)
        self._answers = np.zeros(length, dtype=np.int64)  # (T,) capped target counts

    def _draw(self) -> None:
        super()._draw()
        self._queries = self.np_random.integers(self.num_symbols, size=self.episode_length)
        seen = np.cumsum(np.eye(self.num_symbols, dtype=np.int64)[self._symbols], axis=0)  # (T, n) counts so far
        self._answers = np.minimum(seen[np.arange(self.episode_length), self._queries], self.max_count)

    def _observation(self, t: int) -> np.ndarray:
        obs = self._one_hot(int(self._symbols[t]), self.num_symbols, extra=self.num_symbols)
        obs[self.num_symbols + int(self._queries[t])] = 1.0
        return obs

    def _target(self, t: int) -> int | None:
        return int(self._answers[t])

    def _state(self, t: int) -> int:
        return int(self._answers[t]) if t < self.episode_length else -1

    def _describe(self, t: int) -> str:
        return f"symbol={self._symbols[t]} query={self._queries[t]}"
