"""The sequence replay buffer: SB3's ``ReplayBuffer`` that samples fixed-length windows of episodes.

Storage is SB3's (``observations``, ``next_observations``, ``actions``, ``rewards``, ``dones``,
``timeouts``, each ``(S, E, ...)`` with S = ``buffer_size // n_envs`` steps per env column, a
ring), plus per step:

- ``episode_steps`` (S, E): how many steps of its episode came before this one (0 = the episode
  starts here), which is all the buffer needs to know where episodes begin and end;
- with ``state_shapes``, the memory states the acting networks had *entering* each step (after
  the reset at an episode start), one array ``(S, E, layers, width)`` per state tensor: R2D2's
  stored states (Kapturowski et al., 2019).

Memory is bounded by the buffer size: nothing grows with episode length.

A sample is a batch of windows of ``sequence_length`` (L) rows, each row one stored step of one
env column. The first ``burn_in`` (B) rows only warm the memories; the loss rows start at row B,
the *anchor*, drawn uniformly among the stored steps. A window never crosses an episode boundary:

- rows before the anchor's episode start are padding, and the row where the episode starts is
  flagged in ``episode_starts`` (the memory resets there, so nothing before it matters);
- rows after the episode's last stored step are padding, left out by ``mask``.

Row L (one more than the window) holds the observation that follows the last valid row, so a
single pass of a memory over L + 1 rows gives the state at every step and at every next step (the
TD target). Previous actions and rewards of each row are those of the step before it in the same
episode, zero at an episode start.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl.errors import UserInputError

# rejection sampling of anchors: tries before the valid anchors are listed exactly
_SAMPLING_TRIES = 8


class SequenceReplaySamples(NamedTuple):
    """A batch of W windows (torch tensors, time-major). L = sequence_length, B = burn_in.

    ``observations`` (L+1, W, *obs_shape): the steps of each window and, after its last valid
    row, the next observation; zeros in padding. ``prev_actions`` (L+1, W, A) and
    ``prev_rewards`` (L+1, W): what preceded each row in its episode (zero at episode starts).
    ``episode_starts`` (L+1, W): 1 where the memory resets before the row.
    ``actions`` (L, W, A), ``rewards`` (L, W), ``dones`` (L, W): the transition of each row
    (``dones`` is 1 only for a termination, not for a time-limit truncation).
    ``mask`` (L, W): 1 on the rows that enter the losses (valid and at or after row B).
    ``states``: the stored state tensors at each window's first row, each (layers, W, width),
    in the order of ``state_shapes``; empty without stored states.
    """

    observations: th.Tensor
    prev_actions: th.Tensor
    prev_rewards: th.Tensor
    episode_starts: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    mask: th.Tensor
    states: tuple[th.Tensor, ...]


class StepExtras(NamedTuple):
    """What a sequence replay buffer stores per step beyond SB3's transition.

    ``episode_starts`` (E,): the memory was reset before this step; ``states``: the stored state
    tensors entering the step, each (layers, E, width) as NumPy arrays (empty when not stored).
    """

    episode_starts: np.ndarray
    states: tuple[np.ndarray, ...]


def check_sequence_options(sequence_length: Any, burn_in: Any, steps_per_env: int) -> None:
    """Raise :class:`~recurrent_rl.errors.UserInputError` naming the bad option and the fix."""
    for name, value, low in (("sequence_length", sequence_length, 1), ("burn_in", burn_in, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UserInputError(f"{name} must be an integer >= {low}, got {value!r}")
    if burn_in >= sequence_length:
        raise UserInputError(
            f"burn_in={burn_in} must be smaller than sequence_length={sequence_length}: the burn-in rows only warm "
            f"the memory, the rows after them are trained. Use burn_in <= {sequence_length - 1} or a longer sequence"
        )
    if sequence_length >= steps_per_env:
        raise UserInputError(
            f"sequence_length={sequence_length} does not fit the replay buffer, which keeps {steps_per_env} steps per "
            f"env (buffer_size // n_envs): use a buffer_size of at least {(sequence_length + 1)} steps per env, or a "
            "shorter sequence_length"
        )


class SequenceReplayBuffer(ReplayBuffer):
    """SB3's ``ReplayBuffer`` with episode boundaries, stored memory states and window sampling.

    :param sequence_length: rows per sampled window (L), burn-in included
    :param burn_in: leading rows of a window that only warm the memories (B < L)
    :param state_shapes: ``(layers, width)`` of each memory state tensor to store per step (one
        entry per tensor, for example ``[(1, 64), (1, 64)]`` for the GRU states of an actor and a
        critic); empty: no stored states (every window starts from zero memory)
    Every other parameter is SB3's ``ReplayBuffer``'s; ``optimize_memory_usage`` is not supported.

    Before each :meth:`add`, :meth:`stage` hands over the step's :class:`StepExtras` (SB3's
    ``_store_transition`` calls ``add`` with its own six arguments).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int = 32,
        burn_in: int = 0,
        state_shapes: list[tuple[int, int]] | tuple[tuple[int, int], ...] = (),
    ):
        if optimize_memory_usage:
            raise UserInputError("optimize_memory_usage=True is not supported by the sequence replay buffer: use False")
        if isinstance(observation_space, spaces.Dict):
            raise UserInputError(
                "RecurrentSAC does not support Dict observations yet: flatten them with "
                "gymnasium.wrappers.FlattenObservation"
            )
        check_sequence_options(sequence_length, burn_in, max(buffer_size // n_envs, 1))
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.sequence_length = int(sequence_length)
        self.burn_in = int(burn_in)
        self.state_shapes = [(int(layers), int(width)) for layers, width in state_shapes]
        S, E = self.buffer_size, self.n_envs
        self.episode_steps = np.zeros((S, E), dtype=np.int64)
        self.states = [np.zeros((S, E, layers, width), dtype=np.float32) for layers, width in self.state_shapes]
        self._staged: StepExtras | None = None

    # --- writing ------------------------------------------------------------------------------

    def stage(self, extras: StepExtras) -> None:
        """Hand over the episode starts and memory states of the step that :meth:`add` stores next."""
        self._staged = extras

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        if self._staged is None:
            raise RuntimeError("SequenceReplayBuffer.add needs the step's StepExtras: call stage() before add()")
        extras, self._staged = self._staged, None
        pos = self.pos
        starts = np.asarray(extras.episode_starts, dtype=bool).reshape(self.n_envs)
        has_previous = self.full or pos > 0
        previous = self.episode_steps[pos - 1] + 1 if has_previous else np.zeros(self.n_envs, dtype=np.int64)
        self.episode_steps[pos] = np.where(starts, 0, previous)
        if len(extras.states) != len(self.states):
            raise ValueError(f"expected {len(self.states)} state tensors per step, got {len(extras.states)}")
        for store, state in zip(self.states, extras.states):
            store[pos] = np.swapaxes(np.asarray(state), 0, 1)  # (layers, E, width) -> (E, layers, width)
        super().add(obs, next_obs, action, reward, done, infos)

    # --- sampling -------------------------------------------------------------------------------

    def _oldest(self) -> int:
        return self.pos if self.full else 0

    def valid_anchors(self, steps: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Whether each (step, env) can anchor a window: its burn-in rows are stored, or its
        episode starts inside them. Row 0 also needs the step before it (its previous action)
        unless it starts the episode, so the oldest stored step anchors only episode starts."""
        age = (steps - self._oldest()) % self.buffer_size
        into_episode = self.episode_steps[steps, envs]
        episode_in_window = (into_episode <= self.burn_in) & (into_episode <= age)
        return episode_in_window | (age >= self.burn_in + 1)

    def _sample_anchors(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        upper = self.buffer_size if self.full else self.pos
        if upper == 0:
            raise RuntimeError("the replay buffer is empty: collect steps before sampling")
        steps = np.random.randint(0, upper, size=batch_size)
        envs = np.random.randint(0, self.n_envs, size=batch_size)
        for _ in range(_SAMPLING_TRIES):
            bad = ~self.valid_anchors(steps, envs)
            if not bad.any():
                return steps, envs
            steps[bad] = np.random.randint(0, upper, size=int(bad.sum()))
            envs[bad] = np.random.randint(0, self.n_envs, size=int(bad.sum()))
        grid_steps, grid_envs = np.meshgrid(np.arange(upper), np.arange(self.n_envs), indexing="ij")
        all_steps, all_envs = grid_steps.reshape(-1), grid_envs.reshape(-1)
        ok = np.flatnonzero(self.valid_anchors(all_steps, all_envs))
        bad = ~self.valid_anchors(steps, envs)
        pick = np.random.choice(ok, size=int(bad.sum()))
        steps[bad], envs[bad] = all_steps[pick], all_envs[pick]
        return steps, envs

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceReplaySamples:  # type: ignore[override]
        """``batch_size`` windows, each anchored at a uniformly drawn stored step."""
        steps, envs = self._sample_anchors(batch_size)
        return self._get_windows(steps, envs, env)

    def _get_windows(
        self, anchors: np.ndarray, envs: np.ndarray, env: VecNormalize | None = None
    ) -> SequenceReplaySamples:
        L, B, S = self.sequence_length, self.burn_in, self.buffer_size
        W = len(anchors)
        rows = np.arange(L)[:, None]  # (L, 1)
        idx = (anchors[None, :] - B + rows) % S  # (L, W) buffer step of each row
        cols = envs[None, :]  # (1, W)
        anchor_step = self.episode_steps[anchors, envs]  # (W,) steps into its episode
        first = np.maximum(0, B - anchor_step)  # (W,) first valid row: the window start or the episode start
        # Rows after the anchor: the same episode (its step count goes on) and already stored.
        anchor_age = (anchors - self._oldest()) % S
        offset = rows - B  # (L, 1) rows past the anchor
        upper = S if self.full else self.pos
        same_episode = self.episode_steps[idx, cols] == anchor_step[None, :] + offset
        stored = anchor_age[None, :] + offset <= upper - 1
        after = np.cumprod((same_episode & stored) | (offset <= 0), axis=0).astype(bool)  # stops at the first miss
        valid = after & (rows >= first[None, :])  # (L, W)
        last = L - 1 - np.argmax(valid[::-1], axis=0)  # (W,) last valid row
        mask = valid & (rows >= B)

        # observations: the window's rows, then the next observation after the last valid row
        obs = np.zeros((L + 1, W, *self.obs_shape), dtype=np.float32)
        obs[:L] = self.observations[idx, cols]
        obs[last + 1, np.arange(W)] = self.next_observations[idx[last, np.arange(W)], envs]
        inputs_valid = np.zeros((L + 1, W), dtype=bool)
        inputs_valid[:L] = valid
        inputs_valid[last + 1, np.arange(W)] = True
        obs = self._normalize_obs(obs, env)  # type: ignore[assignment]
        obs = np.where(inputs_valid.reshape(L + 1, W, *([1] * len(self.obs_shape))), obs, 0.0)

        actions = self.actions[idx, cols].astype(np.float32)  # (L, W, A)
        rewards = self._normalize_reward(self.rewards[idx, cols], env).astype(np.float32)  # (L, W)
        # what preceded each row: row r > 0 follows row r-1; row 0 follows the stored step before it
        before = (idx[0] - 1) % S
        prev_actions = np.concatenate([self.actions[before, envs][None].astype(np.float32), actions], axis=0)
        prev_rewards = np.concatenate(
            [self._normalize_reward(self.rewards[before, envs], env).astype(np.float32)[None], rewards], axis=0
        )
        starts = np.zeros((L + 1, W), dtype=np.float32)
        first_starts = self.episode_steps[idx[first, np.arange(W)], envs] == 0
        starts[first, np.arange(W)] = first_starts
        keep_prev = inputs_valid & (starts == 0)  # nothing precedes an episode start or a padding row
        prev_actions *= keep_prev[..., None]
        prev_rewards *= keep_prev

        dones = self.dones[idx, cols] * (1 - self.timeouts[idx, cols])
        states = tuple(np.swapaxes(store[idx[0], envs], 0, 1) for store in self.states)  # each (layers, W, width)
        to = self.to_torch
        return SequenceReplaySamples(
            observations=to(obs.astype(np.float32)),
            prev_actions=to(prev_actions),
            prev_rewards=to(prev_rewards),
            episode_starts=to(starts),
            actions=to(actions * mask[..., None]),
            rewards=to(rewards * mask),
            dones=to((dones * mask).astype(np.float32)),
            mask=to(mask.astype(np.float32)),
            states=tuple(to(np.ascontiguousarray(s)) for s in states),
        )
