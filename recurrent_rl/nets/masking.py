"""Action masks: their layout per action space, their checks, and the masked action distributions.

A mask is one row of booleans per env, True where an action may be taken, laid out as
sb3-contrib's ``MaskablePPO`` lays it out (its ``action_masks()`` convention):

- ``Discrete(n)``: n entries;
- ``MultiDiscrete(nvec)``: ``sum(nvec)`` entries, the choices of each sub-action in turn;
- ``MultiBinary(n)``: 2n entries, ``(off, on)`` for each binary action in turn.

The distributions are sb3-contrib's own (``MaskableCategorical`` and the distributions built on
it, in ``sb3_contrib.common.maskable.distributions``), imported when a mask is first used, so
sb3-contrib is needed only for masking. The policy's action layer is SB3's for every space; for
MultiBinary, whose SB3 layer gives one logit ``l`` per binary action, the masked distribution
reads the pair of logits ``(0, l)``: the same probabilities, ``P(on) = sigmoid(l)``, before masking.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import PyTorchObs

from recurrent_rl.errors import UserInputError
from recurrent_rl.types import RecurrentState

MASKABLE_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class MaskedSequenceObs(NamedTuple):
    """:class:`~recurrent_rl.types.SequenceObs` with the action masks of every step that carries
    a loss (``((T - burn_in)*B, mask_size)`` bool, time-major like ``obs``)."""

    obs: PyTorchObs
    state: RecurrentState
    episode_starts: th.Tensor
    action_masks: th.Tensor
    burn_in: int = 0
    burn_in_gradient: bool = False


def check_maskable_space(action_space: spaces.Space, who: str = "action masking") -> None:
    """Raise :class:`UserInputError` unless ``action_space`` is Discrete, MultiDiscrete or 1-d MultiBinary."""
    if not isinstance(action_space, MASKABLE_SPACES):
        raise UserInputError(
            f"{who} needs a Discrete, MultiDiscrete or MultiBinary action space, got {action_space}: a mask "
            "says which of finitely many actions are allowed"
        )
    if isinstance(action_space, spaces.MultiBinary) and np.ndim(action_space.n) != 0:
        raise UserInputError(
            f"{who} takes a 1-d MultiBinary action space, got MultiBinary({action_space.n}): flatten it"
        )
    if isinstance(action_space, spaces.MultiDiscrete) and np.ndim(action_space.nvec) != 1:
        raise UserInputError(
            f"{who} takes a 1-d MultiDiscrete action space, got nvec of shape {action_space.nvec.shape}"
        )


def mask_groups(action_space: spaces.Space) -> list[int]:
    """The sizes of the groups of a mask row: one group per sub-action, each needing a True entry."""
    check_maskable_space(action_space)
    if isinstance(action_space, spaces.Discrete):
        return [int(action_space.n)]
    if isinstance(action_space, spaces.MultiDiscrete):
        return [int(n) for n in action_space.nvec]
    return [2] * int(action_space.n)  # type: ignore[attr-defined]


def mask_size(action_space: spaces.Space) -> int:
    """Entries in one env's mask row."""
    return sum(mask_groups(action_space))


def check_action_masks(masks: Any, action_space: spaces.Space, n_envs: int, where: str = "action_masks") -> np.ndarray:
    """``masks`` as a ``(n_envs, mask_size)`` bool array, or a :class:`UserInputError` that says what is wrong.

    Accepted: that shape, or one flat row per env of the same size (one env: ``(mask_size,)``).
    Refused: another size, and a row in which some sub-action has no allowed choice.
    """
    size = mask_size(action_space)
    array = np.asarray(masks)
    if array.dtype == object:
        raise UserInputError(f"{where}: expected a boolean array, got {type(masks).__name__} of mixed entries")
    if array.size != n_envs * size:
        raise UserInputError(
            f"{where} has shape {array.shape}, but {action_space} with {n_envs} env(s) needs ({n_envs}, {size}): "
            f"one row per env of {size} entries, True where the action is allowed"
            + (
                " (MultiBinary: an (off, on) pair per binary action)"
                if isinstance(action_space, spaces.MultiBinary)
                else ""
            )
        )
    rows = array.reshape(n_envs, size).astype(bool)
    start = 0
    for group, n in enumerate(mask_groups(action_space)):
        empty = np.flatnonzero(~rows[:, start : start + n].any(axis=1))
        if empty.size:
            part = "" if isinstance(action_space, spaces.Discrete) else f" for sub-action {group}"
            raise UserInputError(
                f"{where}: env row(s) {empty[:8].tolist()} allow no action{part}; every row must allow at least one "
                "action (the env's action_masks() returned an all-False row)"
            )
        start += n
    return rows


def masked_distribution(action_space: spaces.Space, action_logits: th.Tensor, masks: th.Tensor) -> Any:
    """sb3-contrib's masked distribution for ``action_space`` over SB3's action-layer output
    ``action_logits`` (B, ...), with ``masks`` (B, mask_size) applied."""
    try:
        from sb3_contrib.common.maskable.distributions import make_masked_proba_distribution
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise UserInputError(
            "action masking uses sb3-contrib's masked distributions: pip install sb3-contrib"
        ) from error
    distribution = make_masked_proba_distribution(action_space)
    if isinstance(action_space, spaces.MultiBinary):
        # SB3's Bernoulli logit l per binary action -> the categorical pair (0, l): P(on) = sigmoid(l)
        action_logits = th.stack([th.zeros_like(action_logits), action_logits], dim=-1).flatten(1)
    distribution.proba_distribution(action_logits=action_logits)
    distribution.apply_masking(masks)
    return distribution
