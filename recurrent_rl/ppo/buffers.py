"""Rollout buffer that hands out fixed-length sequence chunks, with memory kept at chunk starts.

Storage, ``add`` and GAE (``compute_returns_and_advantage``) are SB3's ``RolloutBuffer``'s;
this module adds the memory state at the first step of every chunk and a ``get`` that yields
minibatches of whole chunks. Each env's rollout of ``n_steps`` is cut into
``n_steps / sequence_length`` chunks; a minibatch holds ``batch_size / sequence_length``
chunks, so its size never changes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples

from recurrent_rl.nets.memory import cat_states, map_state, state_leaves
from recurrent_rl.sequences import chunk_rows, plan_minibatches  # noqa: F401  plan_minibatches: re-exported
from recurrent_rl.types import NestedState, RecurrentState, SequenceObs

# SB3's per-step scalar arrays (S, E), in the order _minibatch unpacks them
SCALARS = ("values", "log_probs", "advantages", "returns", "episode_starts")


class _SequenceChunks:
    """Mixin over SB3's rollout buffers; see the module docstring."""

    # set by SB3's buffer that the mixin is combined with
    buffer_size: int
    n_envs: int
    device: th.device
    pos: int
    full: bool
    observations: Any
    actions: np.ndarray
    rewards: np.ndarray
    returns: np.ndarray
    episode_starts: np.ndarray
    values: np.ndarray
    log_probs: np.ndarray
    advantages: np.ndarray

    def __init__(self, *args: Any, sequence_length: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sequence_length = sequence_length or self.buffer_size
        if self.buffer_size % self.sequence_length:
            raise ValueError(
                f"sequence_length={self.sequence_length} must divide the rollout length n_steps={self.buffer_size}"
            )

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.chunk_start_states: list[NestedState] = []  # one state (batch n_envs) per chunk row
        self._chunks: dict[str, Any] | None = None
        self._whole: RolloutBufferSamples | None = None  # the one minibatch of all chunks, once made

    def add_chunk_start_state(self, state: NestedState) -> None:
        """Record the memory entering step ``pos`` (call it when ``pos % sequence_length == 0``)."""
        expected = len(self.chunk_start_states) * self.sequence_length
        if self.pos != expected:
            raise RuntimeError(f"chunk start state given at step {self.pos}, expected at step {expected}")
        self.chunk_start_states.append(map_state(lambda s: s.detach().clone(), state))

    def _make_chunks(self) -> dict[str, Any]:
        L = self.sequence_length

        def to_chunks(array: np.ndarray) -> th.Tensor:
            return th.as_tensor(chunk_rows(array, L), device=self.device)  # (T, K*E, ...)

        if isinstance(self.observations, dict):
            obs: Any = {key: to_chunks(value) for key, value in self.observations.items()}
        else:
            obs = to_chunks(self.observations)
        return {
            "obs": obs,
            # float32 like SB3's RolloutBuffer.get (MultiBinary actions are stored as int8)
            "actions": to_chunks(self.actions.astype(np.float32, copy=False)),
            # the per-step scalars side by side (SCALARS, T, K*E): one index operation picks a
            # minibatch's chunks from all of them
            "scalars": th.as_tensor(
                np.stack([chunk_rows(getattr(self, name), L) for name in SCALARS]), device=self.device
            ),
            # chunk k*E + e starts at row k of env e, as chunk_rows orders them
            "state": cat_states(self.chunk_start_states),
        }

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        """Minibatches of ``batch_size`` steps = ``batch_size / sequence_length`` whole chunks.

        The chunks are shuffled as SB3 shuffles samples. When one minibatch holds them all (the
        zoo's CartPoleNoVel settings: 8 chunks of 32 steps, batch 256), their order changes
        nothing but the order of sums (every loss is a mean over the minibatch, every chunk runs
        through the memory on its own), so that minibatch is the stored chunks as they are, made
        once per rollout: no index operation per gradient step. The permutation is drawn all
        the same, so the global NumPy random stream advances as SB3's does. Its tensors are views
        of the buffer's own: an update must not change them in place (SB3's does not).
        """
        if not self.full:
            raise RuntimeError("the rollout buffer is not full yet")
        if self._chunks is None:
            self._chunks = self._make_chunks()
        n_chunks = self.n_envs * self.buffer_size // self.sequence_length
        batch_size = batch_size or self.n_envs * self.buffer_size
        per_batch = batch_size // self.sequence_length
        order = np.random.permutation(n_chunks)
        if per_batch >= n_chunks:
            if self._whole is None:
                self._whole = self._minibatch(slice(None))
            yield self._whole
            return
        order_tensor = th.as_tensor(order, device=self.device)
        for start in range(0, n_chunks, per_batch):
            yield self._minibatch(order_tensor[start : start + per_batch])

    def _minibatch(self, idx: th.Tensor | slice) -> RolloutBufferSamples:
        c = self._chunks
        assert c is not None

        def flat(t: th.Tensor) -> th.Tensor:  # (T, K*E, ...) -> (T*n, ...), time-major
            picked = t[:, idx]
            return picked.reshape(-1, *picked.shape[2:])

        obs = {key: flat(value) for key, value in c["obs"].items()} if isinstance(c["obs"], dict) else flat(c["obs"])
        state = map_state(lambda s: s[:, idx], c["state"])
        values, log_probs, advantages, returns, episode_starts = c["scalars"][:, :, idx].unbind(0)
        return RolloutBufferSamples(
            observations=SequenceObs(obs, RecurrentState(*state), episode_starts),  # type: ignore[arg-type]
            actions=flat(c["actions"]),
            old_values=values.reshape(-1),
            old_log_prob=log_probs.reshape(-1),
            advantages=advantages.reshape(-1),
            returns=returns.reshape(-1),
        )

    def nbytes(self) -> int:
        """Bytes held by the rollout storage and the chunk-start memory states."""
        arrays = [self.actions, self.rewards, self.returns, self.episode_starts, self.values]
        arrays += [self.log_probs, self.advantages]
        obs = self.observations.values() if isinstance(self.observations, dict) else [self.observations]
        total = sum(a.nbytes for a in arrays) + sum(o.nbytes for o in obs)
        return total + sum(s.numel() * s.element_size() for st in self.chunk_start_states for s in state_leaves(st))


class RecurrentRolloutBuffer(_SequenceChunks, RolloutBuffer):
    """SB3's ``RolloutBuffer`` for Box/Discrete/... observations, yielding sequence chunks."""


# get() yields RolloutBufferSamples (observations: SequenceObs) from both buffers, where SB3's
# DictRolloutBuffer.get is typed as yielding DictRolloutBufferSamples
class RecurrentDictRolloutBuffer(_SequenceChunks, DictRolloutBuffer):  # type: ignore[misc]
    """SB3's ``DictRolloutBuffer`` for Dict observations, yielding sequence chunks."""
