"""The types that the memory cores, the policy, the rollout buffer and the callbacks share.

A leaf module: it imports torch and SB3's type aliases only, so every other module may import it.

A memory *state* is a tuple of tensors, each ``(L, B, H)``: ``(h,)`` for ``gru`` and ``rnn``,
``(h, c)`` for ``lstm``. Code outside :mod:`recurrent_rl.nets.memory` never looks inside one;
it stores, indexes, masks and converts states with the helpers there.

A leaf module. May import: nothing of the package (torch, SB3's type aliases).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs

MemoryState = tuple[th.Tensor, ...]  # each (L, B, H)
# A policy's state nests memory states (actor, critic); the state helpers accept any such nesting.
NestedState = th.Tensor | tuple[Any, ...]


class RecurrentState(NamedTuple):
    """A policy's memory: the actor's state and the critic's (empty unless ``critic_memory="separate"``)."""

    actor: MemoryState
    critic: MemoryState


class SequenceObs(NamedTuple):
    """What the update feeds the policy: a minibatch of whole chunks.

    ``obs`` is flat ``(T*B, ...)`` in time-major order (step t of chunk b at ``t*B + b``),
    ``state`` the memory at each chunk's first step, ``episode_starts`` ``(T, B)``.

    With ``burn_in = k > 0`` the first k of the T steps are context before the chunk: they run
    through the memory (to warm it up from ``state``, the memory at the first of them) and carry
    no loss; the policy returns values and log-probabilities for the last T - k steps only. With
    ``burn_in_gradient`` the gradient flows back through them, else they run without one.
    """

    obs: PyTorchObs
    state: RecurrentState
    episode_starts: th.Tensor
    burn_in: int = 0
    burn_in_gradient: bool = False
