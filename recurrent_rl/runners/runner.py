"""One rollout runner: K envs, a CPU copy of the policy, and its own memory state, in any process.

A :class:`RolloutRunner` is what a Ray actor runs (see :mod:`recurrent_rl.runners.group`), but it
is a plain class: the tests also drive it in the test process. It owns

- K envs in SB3's ``DummyVecEnv`` (Monitor-wrapped, seeded ``seed, seed + 1, ...``), inside a
  ``VecNormalize`` when the learner normalises;
- a copy of the learner's algorithm (same class, policy and collection settings) on the CPU,
  whose ``collect_rollouts`` is the very loop the learner runs in-process: memory carried step to
  step and reset at episode starts, time-limit truncations bootstrapped, states kept at chunk
  starts, GAE over its own envs (each env's advantages depend on its own column only);
- its memory state, last observations and episode starts, kept from one iteration to the next
  as the learner's in-process path keeps them.

Each :meth:`RolloutRunner.collect` loads the published weights and normalisation statistics,
collects ``n_steps`` per env and returns a :class:`RolloutPiece`: what the rollout buffer holds
for these K columns, the episode infos, and the batch moments of the statistics.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from recurrent_rl.nets.memory import map_state
from recurrent_rl.runners import moments
from recurrent_rl.types import NestedState

# the per-step arrays of SB3's rollout buffer that a runner returns (plus observations and, when
# the algorithm masks actions, action_masks)
BUFFER_ARRAYS = ("actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages")
# the info keys the learner's episode statistics read (SB3's _update_info_buffer, success rates)
EPISODE_KEYS = ("episode", "is_success", "success", "TimeLimit.truncated")


@dataclass(frozen=True)
class RunnerSpec:
    """What a runner needs to build its copy of the learner's algorithm."""

    algorithm: type  # RecurrentPPO or a subclass (MaskableRecurrentPPO)
    policy: type
    policy_kwargs: dict[str, Any]
    n_steps: int
    sequence_length: int
    burn_in: int  # the learner's: its runners record the memory where each chunk's burn-in starts
    gamma: float
    gae_lambda: float
    use_sde: bool
    sde_sample_freq: int
    stats_window_size: int
    # VecNormalize's settings (norm_obs, norm_reward, clip_obs, clip_reward, gamma, epsilon,
    # norm_obs_keys); None: the learner does not normalise
    normalize: dict[str, Any] | None = None


@dataclass
class RolloutPiece:
    """What one runner collected in one iteration: the rollout buffer's columns of its K envs."""

    observations: Any  # (n_steps, K, ...) array, or a dict of them
    arrays: dict[str, np.ndarray]  # BUFFER_ARRAYS (+ action_masks), each (n_steps, K, ...)
    chunk_states: list[NestedState]  # the memory where each chunk (or its burn-in) starts (batch K), CPU tensors
    final_state: NestedState  # the memory after the last step (batch K), CPU tensors
    dones: np.ndarray  # (n_steps, K) bool
    infos: list[tuple[int, int, dict[str, Any]]]  # (step, env, the EPISODE_KEYS of its info) where present
    obs_moments: Any = None  # the batch moments of the observations it normalised (None: none)
    ret_moments: Any = None  # ... and of the discounted returns
    seconds: float = 0.0  # wall time of the collection
    pid: int = field(default_factory=os.getpid)


class _StepRecorder(BaseCallback):
    """Keeps each step's dones and the episode keys of its infos (the learner replays them)."""

    def __init__(self) -> None:
        super().__init__()
        self.dones: list[np.ndarray] = []
        self.infos: list[tuple[int, int, dict[str, Any]]] = []

    def clear(self) -> None:
        self.dones, self.infos = [], []

    def _on_step(self) -> bool:
        step = len(self.dones)
        self.dones.append(np.asarray(self.locals["dones"], dtype=bool).copy())
        for env, info in enumerate(self.locals["infos"]):
            kept = {key: info[key] for key in EPISODE_KEYS if key in info}
            if kept:
                self.infos.append((step, env, kept))
        return True


def _to_cpu(state: NestedState) -> NestedState:
    return map_state(lambda s: s.detach().cpu().clone(), state)


class RolloutRunner:
    """K envs, a CPU copy of the algorithm and its memory; see the module docstring.

    :param env_fn: makes one env (a picklable callable: an env id's factory, a lambda)
    :param n_envs: K
    :param seed: env ``j`` is reset with ``seed + j`` at :meth:`reset` (None: unseeded)
    """

    def __init__(self, env_fn: Callable[[], Any], n_envs: int, seed: int | None = None):
        th.set_num_threads(1)  # one process per runner: small recurrent nets run fastest on one thread
        self.n_envs = n_envs
        self.raw_env: VecEnv = make_vec_env(env_fn, n_envs=n_envs, seed=seed)
        self.env: VecEnv = self.raw_env
        self.model: Any = None
        self._pending_obs: Any = None  # raw observations of a reset, normalised at the next collect
        self._recorder = _StepRecorder()

    # --- what the learner's VecEnv facade asks of its envs ------------------------------------------

    def pid(self) -> int:
        return os.getpid()

    def spaces(self) -> tuple[spaces.Space, spaces.Space]:
        return self.raw_env.observation_space, self.raw_env.action_space

    def get_attr(self, name: str, indices: list[int] | None = None) -> list[Any]:
        return self.raw_env.get_attr(name, indices)

    def set_attr(self, name: str, value: Any, indices: list[int] | None = None) -> None:
        self.raw_env.set_attr(name, value, indices)

    def env_method(self, name: str, args: tuple, kwargs: dict[str, Any], indices: list[int] | None = None) -> list[Any]:
        return self.raw_env.env_method(name, *args, indices=indices, **kwargs)

    def has_attr(self, name: str) -> bool:
        return bool(self.raw_env.has_attr(name))

    def env_is_wrapped(self, wrapper_class: type, indices: list[int] | None = None) -> list[bool]:
        return self.raw_env.env_is_wrapped(wrapper_class, indices)

    def reset(self, seed: int | None = None) -> Any:
        """Reset the envs (env ``j`` with ``seed + j``); their raw observations. The memory starts fresh."""
        if seed is not None:
            self.raw_env.seed(seed)
        obs = self.raw_env.reset()
        self._pending_obs = obs
        if self.model is not None:
            self._fresh_memory()
        return obs

    def close(self) -> None:
        self.raw_env.close()

    # --- collection ---------------------------------------------------------------------------------

    def build(self, spec: RunnerSpec, seed: int | None) -> None:
        """Make the CPU copy of the algorithm (seeded ``seed``: torch's generator, as the learner's)."""
        if spec.normalize is not None:
            self.env = VecNormalize(self.raw_env, training=True, **spec.normalize)
        self.model = spec.algorithm(
            spec.policy,
            self.env,
            n_steps=spec.n_steps,
            batch_size=spec.n_steps * self.n_envs,
            sequence_length=spec.sequence_length,
            burn_in=spec.burn_in,
            n_epochs=1,
            gamma=spec.gamma,
            gae_lambda=spec.gae_lambda,
            use_sde=spec.use_sde,
            sde_sample_freq=spec.sde_sample_freq,
            stats_window_size=spec.stats_window_size,
            policy_kwargs=dict(spec.policy_kwargs),
            seed=seed,
            device="cpu",
            torch_threads=1,
        )
        self.model.set_logger(Logger(folder=None, output_formats=[]))  # the learner logs, not the runners
        self.model.ep_info_buffer = deque(maxlen=spec.stats_window_size)
        self.model.ep_success_buffer = deque(maxlen=spec.stats_window_size)
        self._recorder.init_callback(self.model)
        self._fresh_memory()

    def _fresh_memory(self) -> None:
        self.model._last_state = self.model.policy.initial_state(self.n_envs)
        self.model._last_episode_starts = np.ones(self.n_envs, dtype=bool)

    def collect(self, weights: dict[str, Any], obs_rms: Any, ret_rms: Any, n_steps: int) -> RolloutPiece:
        """One iteration: load the weights (and statistics), collect ``n_steps`` per env, return them."""
        started = time.perf_counter()
        model = self.model
        model.policy.load_state_dict(weights)
        normalizer = self.env if isinstance(self.env, VecNormalize) else None
        if normalizer is not None:
            if obs_rms is not None:
                normalizer.obs_rms = moments.tee(obs_rms)
            normalizer.ret_rms = moments.tee(ret_rms)
        if self._pending_obs is not None:  # the first observations after a reset
            model._last_obs = normalizer.normalize_obs(self._pending_obs) if normalizer else self._pending_obs
            if normalizer is not None:
                normalizer.old_obs, normalizer.returns = self._pending_obs, np.zeros(self.n_envs)
            self._pending_obs = None
        self._recorder.clear()
        buffer = model.rollout_buffer
        model.collect_rollouts(model.env, self._recorder, buffer, n_steps)
        observations = (
            {key: value.copy() for key, value in buffer.observations.items()}
            if isinstance(buffer.observations, dict)
            else buffer.observations.copy()
        )
        arrays = {name: getattr(buffer, name).copy() for name in BUFFER_ARRAYS}
        if hasattr(buffer, "action_masks"):
            arrays["action_masks"] = buffer.action_masks.copy()
        return RolloutPiece(
            observations=observations,
            arrays=arrays,
            chunk_states=[_to_cpu(state) for state in buffer.chunk_start_states],
            final_state=_to_cpu(model._last_state),
            dones=np.stack(self._recorder.dones),
            infos=list(self._recorder.infos),
            obs_moments=moments.batch_of(normalizer.obs_rms)
            if normalizer is not None and obs_rms is not None
            else None,
            ret_moments=moments.batch_of(normalizer.ret_rms) if normalizer is not None else None,
            seconds=time.perf_counter() - started,
        )
