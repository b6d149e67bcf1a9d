"""Wrappers that make an env partially observable.

Wrappers that hide something put what they hide into ``info["state"]`` (a copy of the clean
observation) unless an inner env or wrapper already set it, so the innermost, truest hidden state
wins when wrappers are stacked (a memory task's cue is kept under a flicker wrapper, say).
Random wrappers (flicker, noise) draw from their own generator, seeded from the seed given to
``reset(seed=...)`` (on an independent stream per wrapper type), so a seeded reset makes the
whole stack deterministic. They never draw from the env's ``np_random``: the env produces the
same episodes with or without them, so e.g. ``p=0`` and ``p=0.2`` compare on identical tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recurrent_rl.envs._checks import check_float


def _with_state(info: dict[str, Any], observation: np.ndarray) -> dict[str, Any]:
    """``info`` plus ``"state"``: the clean observation, unless an inner layer already set one."""
    info = dict(info)
    info.setdefault("state", np.array(observation, copy=True))
    return info


def _box(space: gym.Space, wrapper: str, flat: bool = False) -> spaces.Box:
    if not isinstance(space, spaces.Box) or (flat and len(space.shape) != 1):
        kind = "a flat (1-D) Box" if flat else "a Box"
        raise ValueError(f"{wrapper} needs {kind} observation space, got {space}")
    return space


def _box_with_zero(space: spaces.Box) -> spaces.Box:
    """``space`` with its bounds widened, where needed, to hold 0 (what hidden entries read)."""
    low = np.minimum(space.low, 0).astype(space.dtype)
    high = np.maximum(space.high, 0).astype(space.dtype)
    return spaces.Box(low=low, high=high, dtype=space.dtype)


class MaskObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Zero chosen dimensions of a flat Box observation (the shape and bounds stay the same).

    Zeroing rather than removing keeps the same observation space as rl-baselines3-zoo's
    ``*NoVel-v1`` envs, so presets tuned there transfer unchanged. ``info["state"]`` holds the
    full unmasked observation.

    :param indices: the dimensions to hide
    """

    def __init__(self, env: gym.Env, indices: Sequence[int]):
        # recorded so that ``env.spec.make()`` can rebuild a wrapped env (check_env does)
        gym.utils.RecordConstructorArgs.__init__(self, indices=indices)
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"MaskObservation needs a flat Box observation space, got {space}")
        size = space.shape[0]
        bad = [i for i in indices if not isinstance(i, (int, np.integer)) or not -size <= i < size]
        if bad:
            raise ValueError(
                f"indices {bad} do not exist in an observation of size {size}; valid range is 0..{size - 1}"
            )
        self.indices = np.array(sorted({int(i) % size for i in indices}), dtype=np.int64)
        self._keep = np.ones(size, dtype=space.dtype)
        self._keep[self.indices] = 0
        # hidden dimensions read 0: widen their bounds to hold it, keep the rest as they are
        low = np.where(self._keep == 1, space.low, np.minimum(space.low, 0)).astype(space.dtype)
        high = np.where(self._keep == 1, space.high, np.maximum(space.high, 0)).astype(space.dtype)
        self.observation_space = spaces.Box(low=low, high=high, dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self._keep

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self.observation(obs), _with_state(info, obs)

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(obs), reward, terminated, truncated, _with_state(info, obs)


class _SeededWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A wrapper with its own generator, reseeded whenever ``reset`` gets a seed."""

    _STREAM = 0  # SeedSequence spawn key: different wrapper types get independent streams

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        """This wrapper's generator (from OS entropy until a reset with a seed)."""
        return self._rng if self._rng is not None else self._reseed(None)

    def _reseed(self, seed: int | None) -> np.random.Generator:
        if seed is not None or self._rng is None:
            # spawn_key keeps this stream independent of the env's own, seeded by the same number
            self._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(self._STREAM,)))
        return self._rng


class FlickerObservation(_SeededWrapper):
    """Replace each observation (reset included) by zeros with probability ``p``.

    ``info["flickered"]`` says whether this observation was blanked; ``info["state"]`` holds the
    clean one. Exactly one uniform number is drawn per observation whatever ``p`` is, so the
    flicker pattern for a seed is nested across ``p`` (what is blank at p=0.1 is blank at p=0.2).

    :param p: probability of a blank observation, in [0, 1]
    """

    _STREAM = 1

    def __init__(self, env: gym.Env, p: float):
        gym.utils.RecordConstructorArgs.__init__(self, p=p)
        super().__init__(env)
        self.p = check_float("p", p, 0.0, 1.0)
        self.observation_space = _box_with_zero(_box(env.observation_space, "FlickerObservation"))

    def _flicker(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        hide = bool(self.rng.random() < self.p)
        info = _with_state(info, obs)
        info["flickered"] = hide
        return (np.zeros_like(obs) if hide else obs), info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._reseed(seed)
        return self._flicker(*self.env.reset(seed=seed, options=options))

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._flicker(obs, info)
        return obs, reward, terminated, truncated, info


class GaussianObservationNoise(_SeededWrapper):
    """Add i.i.d. ``Normal(0, sigma)`` noise to every entry of each observation (reset included).

    Noise is unbounded, so for ``sigma > 0`` the observation bounds become (-inf, inf).
    ``info["state"]`` holds the clean observation.

    :param sigma: noise standard deviation (>= 0)
    """

    _STREAM = 2

    def __init__(self, env: gym.Env, sigma: float):
        gym.utils.RecordConstructorArgs.__init__(self, sigma=sigma)
        super().__init__(env)
        self.sigma = check_float("sigma", sigma, 0.0)
        space = _box(env.observation_space, "GaussianObservationNoise")
        if not np.issubdtype(space.dtype, np.floating):
            raise ValueError(f"GaussianObservationNoise needs a floating-point observation dtype, got {space.dtype}")
        if self.sigma > 0:
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=space.shape, dtype=space.dtype)

    def _noisy(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        # drawn even for sigma == 0 so the RNG stream does not depend on sigma
        noise = self.rng.normal(0.0, 1.0, size=np.shape(obs)) * self.sigma
        return (obs + noise).astype(self.observation_space.dtype), _with_state(info, obs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._reseed(seed)
        return self._noisy(*self.env.reset(seed=seed, options=options))

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._noisy(obs, info)
        return obs, reward, terminated, truncated, info


class PreviousActionReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append the previous action and reward to a flat Box observation (both zero after reset).

    Layout ``(obs_dim + action_dim + 1,)``: the observation, then the previous action (one-hot of
    size ``n`` for ``Discrete(n)``, the flattened action clipped to the action bounds for
    ``Box``, clipped because that is the action the env can apply), then the previous reward.

    A recurrent policy needs these to tell its own exploration from the env's dynamics, and the
    reward is the only channel through which e.g. a T-maze says "that arm was wrong".
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        obs_space = _box(env.observation_space, "PreviousActionReward", flat=True)
        act = env.action_space
        if isinstance(act, spaces.Discrete):
            act_low, act_high = np.zeros(int(act.n)), np.ones(int(act.n))
        elif isinstance(act, spaces.Box):
            act_low, act_high = act.low.reshape(-1), act.high.reshape(-1)
        else:
            raise ValueError(f"PreviousActionReward needs a Discrete or Box action space, got {act}")
        dtype = np.result_type(obs_space.dtype, np.float32)
        self._act_low, self._act_high = act_low.astype(dtype), act_high.astype(dtype)
        self.observation_space = spaces.Box(
            low=np.concatenate([obs_space.low, self._act_low, [-np.inf]]).astype(dtype),
            high=np.concatenate([obs_space.high, self._act_high, [np.inf]]).astype(dtype),
            dtype=dtype,
        )
        self._prev_action = np.zeros_like(self._act_low)  # (action_dim,)
        self._prev_reward = 0.0

    def _encode(self, action: Any) -> np.ndarray:
        act = self.env.action_space
        if isinstance(act, spaces.Discrete):
            encoded = np.zeros_like(self._act_low)
            encoded[int(np.asarray(action).reshape(-1)[0]) - int(act.start)] = 1.0
            return encoded
        flat = np.asarray(action, dtype=self._act_low.dtype).reshape(-1)
        return np.clip(flat, self._act_low, self._act_high)

    def _augment(self, obs: np.ndarray) -> np.ndarray:
        dtype = self.observation_space.dtype
        return np.concatenate(
            [np.asarray(obs, dtype=dtype), self._prev_action, np.array([self._prev_reward], dtype=dtype)]
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._prev_action = np.zeros_like(self._act_low)
        self._prev_reward = 0.0
        return self._augment(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._prev_action = self._encode(action)
        self._prev_reward = float(reward)
        return self._augment(obs), reward, terminated, truncated, info
