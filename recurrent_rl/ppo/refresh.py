"""Fresh memory states for the update: ``state_refresh``, and the options that go with it.

The memory kept at a chunk's start was computed during the rollout, by the parameters of the
rollout. After the first epoch of an update the parameters have changed, and the stored state no
longer is what the network would have in memory at that step: the chunk starts from a stale
state (Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed Reinforcement
Learning", R2D2; sb3-contrib issue #222). Two remedies, both options of
:class:`~recurrent_rl.ppo.algorithm.RecurrentPPO`:

- ``state_refresh=True``: before every epoch after the first, one pass over the whole rollout
  without gradients, chunk after chunk, recomputes every chunk-start state with the current
  parameters (:func:`refresh_chunk_states`). The first chunk of each env row starts from the
  state kept for it (nothing earlier is at hand), so it is fresh only at the first epoch;
  ``burn_in`` moves that start earlier.
- ``burn_in=k``: every chunk comes with the k steps before it, which only warm the memory up
  and carry no loss (the buffer's windows, :func:`recurrent_rl.sequences.window_rows`; the
  policy runs them without gradients). ``burn_in_gradient=True`` lets the gradient flow back
  through them: truncated BPTT over ``k + sequence_length`` steps, with the loss on the last
  ``sequence_length``, so a chunk's decisions learn from observations up to k steps before it,
  across rollout boundaries.

Both work for every memory and critic option, with action masking, and wherever the collection
loop runs: the loop asks the buffer which states to keep (``wants_state``), and the update's
buffer does the rest.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch as th

from recurrent_rl.nets.memory import cat_states, select_state
from recurrent_rl.sequences import map_obs
from recurrent_rl.types import NestedState, SequenceObs


def refresh_chunk_states(policy: Any, buffer: Any, chunks: dict[str, Any]) -> NestedState:
    """The chunk-start states of a rollout recomputed by ``policy`` as it is now.

    ``chunks`` is the buffer's: ``rollout_obs`` and ``rollout_episode_starts`` hold each env's
    whole rollout with its ``burn_in`` steps of context before it, ``(k + S, E, ...)``; ``state``
    the state entering each window (window ``c`` starts at row ``c * T`` there). Starting from
    window 0's state, the memory runs over T rows at a time (no gradient, evaluation mode:
    dropout off), and the state after each piece is the next window's.
    """
    T, E = buffer.sequence_length, buffer.n_envs
    n_windows = buffer.buffer_size // T
    state = select_state(chunks["state"], slice(0, E))
    if n_windows == 1:
        return chunks["state"]
    obs, starts = chunks["rollout_obs"], chunks["rollout_episode_starts"]
    states = [state]
    was_training = policy.training
    policy.set_training_mode(False)
    try:
        with th.no_grad():
            for c in range(n_windows - 1):
                rows = slice(c * T, (c + 1) * T)
                piece = map_obs(partial(_rows_flat, rows=rows), obs)  # (T*E, ...) time-major
                state = policy.memory_state_after(SequenceObs(piece, state, starts[rows]))
                states.append(state)
    finally:
        policy.set_training_mode(was_training)
    return cat_states(states)


def _rows_flat(o: th.Tensor, rows: slice) -> th.Tensor:
    """Rows ``rows`` of a ``(S, E, ...)`` tensor, flat time-major: ``(len * E, ...)``."""
    picked = o[rows]
    return picked.reshape(-1, *picked.shape[2:])


def attach_refresh(buffer: Any, policy: Any | None) -> None:
    """Make ``buffer`` refresh its chunk-start states with ``policy`` before every epoch after
    the first (None: keep the stored states)."""
    if policy is None:
        buffer.refresher = None
        return

    def refresher(buffer: Any, chunks: dict[str, Any]) -> NestedState:
        return refresh_chunk_states(policy, buffer, chunks)

    buffer.refresher = refresher
