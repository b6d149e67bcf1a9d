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

from recurrent_rl.memory import NestedState, cat_states, map_state, state_leaves
from recurrent_rl.policies import RecurrentState, SequenceObs
from recurrent_rl.sequences import chunk_rows


class _SequenceChunks:
    """Mixin over SB3's rollout buffers; see the module docstring."""

    buffer_size: int
    n_envs: int
    device: th.device
    observations: Any

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

    def add_chunk_start_state(self, state: NestedState) -> None:
        """Record the memory entering step ``pos`` (call it when ``pos % sequence_length == 0``)."""
        expected = len(self.chunk_start_states) * self.sequence_length
        if self.pos != expected:  # type: ignore[attr-defined]
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
            "actions": to_chunks(self.actions.astype(np.float32, copy=False)),  # type: ignore[attr-defined]
            "values": to_chunks(self.values),  # type: ignore[attr-defined]
            "log_probs": to_chunks(self.log_probs),  # type: ignore[attr-defined]
            "advantages": to_chunks(self.advantages),  # type: ignore[attr-defined]
            "returns": to_chunks(self.returns),  # type: ignore[attr-defined]
            "episode_starts": to_chunks(self.episode_starts),  # type: ignore[attr-defined]
            # chunk k*E + e starts at row k of env e, as chunk_rows orders them
            "state": cat_states(self.chunk_start_states),
        }

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:  # type: ignore[override]
        """Minibatches of ``batch_size`` steps = ``batch_size / sequence_length`` whole chunks."""
        if not self.full:  # type: ignore[attr-defined]
            raise RuntimeError("the rollout buffer is not full yet")
        if self._chunks is None:
            self._chunks = self._make_chunks()
        n_chunks = self.n_envs * self.buffer_size // self.sequence_length
        batch_size = batch_size or self.n_envs * self.buffer_size
        per_batch = batch_size // self.sequence_length
        order = th.as_tensor(np.random.permutation(n_chunks), device=self.device)
        for start in range(0, n_chunks, per_batch):
            yield self._minibatch(order[start : start + per_batch])

    def _minibatch(self, idx: th.Tensor) -> RolloutBufferSamples:
        c = self._chunks
        assert c is not None

        def flat(t: th.Tensor) -> th.Tensor:  # (T, K*E, ...) -> (T*n, ...), time-major
            picked = t[:, idx]
            return picked.reshape(-1, *picked.shape[2:])

        obs = {key: flat(value) for key, value in c["obs"].items()} if isinstance(c["obs"], dict) else flat(c["obs"])
        state = map_state(lambda s: s[:, idx], c["state"])
        return RolloutBufferSamples(
            observations=SequenceObs(obs, RecurrentState(*state), c["episode_starts"][:, idx]),  # type: ignore[arg-type]
            actions=flat(c["actions"]),
            old_values=flat(c["values"]),
            old_log_prob=flat(c["log_probs"]),
            advantages=flat(c["advantages"]),
            returns=flat(c["returns"]),
        )

    def nbytes(self) -> int:
        """Bytes held by the rollout storage and the chunk-start memory states."""
        arrays = [self.actions, self.rewards, self.returns, self.episode_starts, self.values]  # type: ignore[attr-defined]
        arrays += [self.log_probs, self.advantages]  # type: ignore[attr-defined]
        obs = self.observations.values() if isinstance(self.observations, dict) else [self.observations]
        total = sum(a.nbytes for a in arrays) + sum(o.nbytes for o in obs)
        return total + sum(s.numel() * s.element_size() for st in self.chunk_start_states for s in state_leaves(st))


class RecurrentRolloutBuffer(_SequenceChunks, RolloutBuffer):
    """SB3's ``RolloutBuffer`` for Box/Discrete/... observations, yielding sequence chunks."""


class RecurrentDictRolloutBuffer(_SequenceChunks, DictRolloutBuffer):
    """SB3's ``DictRolloutBuffer`` for Dict observations, yielding sequence chunks."""
