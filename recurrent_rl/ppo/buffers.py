"""Rollout buffer that hands out fixed-length sequence chunks, with memory kept at chunk starts.

Storage, ``add`` and GAE (``compute_returns_and_advantage``) are SB3's ``RolloutBuffer``'s;
this module adds the memory state at the first step of every chunk and a ``get`` that yields
minibatches of whole chunks. Each env's rollout of ``n_steps`` is cut into
``n_steps / sequence_length`` chunks; a minibatch holds ``batch_size / sequence_length``
chunks, so its size never changes.

With ``burn_in = k``, each chunk comes with the k steps of the same env before it (for the first
chunks, the end of the previous rollout, kept for this), which run through the memory and carry
no loss (:class:`~recurrent_rl.types.SequenceObs`); the state kept is the one entering the
first of them. With a ``refresher`` (``state_refresh``, :mod:`recurrent_rl.ppo.refresh`) those
states are recomputed with the current parameters before every epoch after the first.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples

from recurrent_rl.nets.memory import cat_states, map_state, state_leaves
from recurrent_rl.sequences import (  # noqa: F401  plan_minibatches: re-exported
    check_burn_in,
    chunk_rows,
    map_obs,
    plan_minibatches,
    window_rows,
    window_starts,
)
from recurrent_rl.types import NestedState, RecurrentState, SequenceObs

# SB3's per-step scalar arrays (S, E) of the steps that carry a loss, in the order _minibatch unpacks them
SCALARS = ("values", "log_probs", "advantages", "returns")
# (buffer, chunk tensors) -> the chunk-start states recomputed with the current parameters
Refresher = Callable[[Any, dict[str, Any]], NestedState]


class _Tail:
    """The last ``burn_in`` steps of a full rollout: context for the next rollout's first chunks."""

    def __init__(self, observations: Any, episode_starts: np.ndarray, states: dict[int, NestedState]):
        self.observations = observations  # (k, E, ...) or a dict of them
        self.episode_starts = episode_starts  # (k, E)
        self.states = states  # position (negative, counted from the next rollout's first step) -> state


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

    def __init__(
        self,
        *args: Any,
        sequence_length: int | None = None,
        burn_in: int = 0,
        burn_in_gradient: bool = False,
        **kwargs: Any,
    ):
        self.burn_in, self.burn_in_gradient = 0, bool(burn_in_gradient)  # SB3's __init__ calls reset()
        super().__init__(*args, **kwargs)
        self.sequence_length = sequence_length or self.buffer_size
        if self.buffer_size % self.sequence_length:
            raise ValueError(
                f"sequence_length={self.sequence_length} must divide the rollout length n_steps={self.buffer_size}"
            )
        self.burn_in = check_burn_in(burn_in, self.buffer_size)
        # set by RecurrentPPO with state_refresh (recurrent_rl.ppo.refresh); None: stored states as they are
        self.refresher: Refresher | None = None
        self._tail: _Tail | None = None

    def reset(self) -> None:
        tail = self._take_tail()  # before SB3 replaces the arrays
        super().reset()  # type: ignore[misc]
        self._tail = tail
        self.chunk_start_states: list[NestedState] = []  # the states wants_state asked for, in step order
        self._state_positions: list[int] = []
        self._chunks: dict[str, Any] | None = None
        self._whole: RolloutBufferSamples | None = None  # the one minibatch of all chunks, once made

    def _take_tail(self) -> _Tail | None:
        k = getattr(self, "burn_in", 0)
        if not k or not getattr(self, "full", False):
            return None  # no burn-in, or no whole rollout before (the first, or one stopped by a callback)
        S = self.buffer_size
        observations = map_obs(lambda o: o[S - k :].copy(), self.observations)
        states = {p - S: st for p, st in zip(self._state_positions, self.chunk_start_states) if p >= S - k}
        return _Tail(observations, self.episode_starts[S - k :].copy(), states)

    def wants_state(self, step: int) -> bool:
        """Whether the collection loop must record the memory entering rollout step ``step``
        (with :meth:`add_chunk_start_state`): where a chunk starts, or with burn-in, where the
        context of a chunk (of this rollout or the next) starts."""
        return (step + self.burn_in) % self.sequence_length == 0

    def add_chunk_start_state(self, state: NestedState) -> None:
        """Record the memory entering step ``pos`` (call it where :meth:`wants_state` says so)."""
        if not self.wants_state(self.pos):
            expected = [p for p in range(self.buffer_size) if self.wants_state(p)]
            raise RuntimeError(f"chunk start state given at step {self.pos}, expected at the steps {expected[:8]}")
        if self.pos in self._state_positions:
            raise RuntimeError(f"a chunk start state for step {self.pos} was already given")
        self.chunk_start_states.append(map_state(lambda s: s.detach().clone(), state))
        self._state_positions.append(self.pos)

    def set_chunk_start_states(self, states: list[NestedState]) -> None:
        """All the states :meth:`wants_state` asks for at once, in step order (a rollout assembled
        from runners, :mod:`recurrent_rl.runners`, whose buffers recorded them at the same steps)."""
        positions = [p for p in range(self.buffer_size) if self.wants_state(p)]
        if len(states) != len(positions):
            raise RuntimeError(
                f"{len(states)} chunk start states given, expected {len(positions)} (at {positions[:8]})"
            )
        self.chunk_start_states, self._state_positions = list(states), positions

    def _start_states(self) -> list[NestedState]:
        """The state entering each window, chunk by chunk (zeros where no rollout came before)."""
        stored = dict(zip(self._state_positions, self.chunk_start_states))
        earlier = self._tail.states if self._tail is not None else {}
        zeros = map_state(th.zeros_like, self.chunk_start_states[0])
        return [
            stored[p] if p >= 0 else earlier.get(p, zeros)
            for p in window_starts(self.buffer_size, self.sequence_length, self.burn_in)
        ]

    def _with_context(self, array: np.ndarray, name: str) -> np.ndarray:
        """``array`` (S, E, ...) with the previous rollout's last ``burn_in`` rows before it."""
        k = self.burn_in
        if self._tail is not None:
            before = self._tail.episode_starts if name == "episode_starts" else self._tail.observations
            if isinstance(before, dict):
                before = before[name]
            return np.concatenate([before, array])
        padded = np.concatenate([np.zeros((k, *array.shape[1:]), dtype=array.dtype), array])
        if name == "episode_starts":
            # Nothing came before (the first rollout, whose first step is an episode start anyway,
            # or after a rollout stopped by a callback): the memory starts fresh at step 0.
            padded[k] = 1.0
        return padded

    def _make_chunks(self) -> dict[str, Any]:
        L, k = self.sequence_length, self.burn_in

        def to_chunks(array: np.ndarray) -> th.Tensor:
            return th.as_tensor(chunk_rows(array, L), device=self.device)  # (T, K*E, ...)

        def windows(array: np.ndarray, name: str) -> th.Tensor:  # (k+T, K*E, ...)
            if not k:
                return to_chunks(array)
            return th.as_tensor(window_rows(self._with_context(array, name), L, k), device=self.device)

        if isinstance(self.observations, dict):
            obs: Any = {key: windows(value, key) for key, value in self.observations.items()}
        else:
            obs = windows(self.observations, "observations")
        chunks = {
            "obs": obs,
            "episode_starts": windows(self.episode_starts, "episode_starts"),
            # float32 like SB3's RolloutBuffer.get (MultiBinary actions are stored as int8)
            "actions": to_chunks(self.actions.astype(np.float32, copy=False)),
            # the per-step scalars side by side (SCALARS, T, K*E): one index operation picks a
            # minibatch's chunks from all of them
            "scalars": th.as_tensor(
                np.stack([chunk_rows(getattr(self, name), L) for name in SCALARS]), device=self.device
            ),
            # chunk c*E + e starts at row c of env e, as chunk_rows orders them
            "state": cat_states(self._start_states()),
        }
        if self.refresher is not None:
            # the whole rollout with its context, (k+S, E, ...), for recomputing the states
            def whole(array: np.ndarray, name: str) -> th.Tensor:
                return th.as_tensor(self._with_context(array, name) if k else array, device=self.device)

            if isinstance(self.observations, dict):
                chunks["rollout_obs"] = {key: whole(value, key) for key, value in self.observations.items()}
            else:
                chunks["rollout_obs"] = whole(self.observations, "observations")
            chunks["rollout_episode_starts"] = whole(self.episode_starts, "episode_starts")
        return chunks

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        """Minibatches of ``batch_size`` steps = ``batch_size / sequence_length`` whole chunks.

        SB3's ``PPO.train`` calls it once per epoch. From the second call on, a ``refresher``
        recomputes the chunk-start states with the parameters of that epoch.

        The chunks are shuffled as SB3 shuffles samples. When one minibatch holds them all (the
        zoo's CartPoleNoVel settings: 8 chunks of 32 steps, batch 256), their order changes
        nothing but the order of sums (every loss is a mean over the minibatch, every chunk runs
        through the memory on its own), so that minibatch is the stored chunks as they are, made
        once per rollout (and again after each refresh): no index operation per gradient step.
        The permutation is drawn all the same, so the global NumPy random stream advances as
        SB3's does. Its tensors are views of the buffer's own: an update must not change them
        in place (SB3's does not).
        """
        if not self.full:
            raise RuntimeError("the rollout buffer is not full yet")
        if self._chunks is None:
            self._chunks = self._make_chunks()
        elif self.refresher is not None:
            self._chunks["state"] = self.refresher(self, self._chunks)
            self._whole = None
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

        obs = map_obs(flat, c["obs"])
        state = map_state(lambda s: s[:, idx], c["state"])
        values, log_probs, advantages, returns = c["scalars"][:, :, idx].unbind(0)
        seq = SequenceObs(
            obs,
            RecurrentState(*state),
            c["episode_starts"][:, idx],
            self.burn_in,
            self.burn_in_gradient,
        )
        return RolloutBufferSamples(
            observations=seq,  # type: ignore[arg-type]
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
