"""Action masking with memory: :class:`MaskableRecurrentPPO` and its rollout buffers.

sb3-contrib's ``MaskablePPO`` convention, with a recurrent policy: the env exposes
``action_masks()`` (directly or through sb3-contrib's ``ActionMasker`` wrapper; a VecEnv is read
with sb3-contrib's ``get_action_masks``), the masks of every rollout step are stored in the
rollout buffer, cut into the same chunks as the observations, and applied in the update, so the
log-probabilities, ratios and entropy of PPO's loss are those of the masked distribution the
actions were sampled from. ``predict(..., action_masks=...)`` applies a mask at inference; the
distributions are sb3-contrib's (``MaskableCategorical`` and those built on it), see
:mod:`recurrent_rl.nets.masking` for the mask layout of each action space.

A separate class rather than a mode of :class:`~recurrent_rl.ppo.algorithm.RecurrentPPO`: the
name is the one sb3-contrib users look for, and an env without masks is refused at construction
instead of training silently without them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv

from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.masking import MaskedSequenceObs, check_action_masks, check_maskable_space, mask_size
from recurrent_rl.ppo.algorithm import RecurrentPPO
from recurrent_rl.ppo.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from recurrent_rl.sequences import chunk_rows

ACTION_MASKS_METHOD = "action_masks"  # sb3-contrib's EXPECTED_METHOD_NAME


def env_has_action_masks(env: GymEnv) -> bool:
    """Whether ``env`` (a VecEnv or a Gymnasium env, wrappers included) exposes ``action_masks()``."""
    if isinstance(env, VecEnv):
        return bool(env.has_attr(ACTION_MASKS_METHOD))
    try:
        env.get_wrapper_attr(ACTION_MASKS_METHOD)
        return True
    except AttributeError:
        return False


def env_action_masks(env: GymEnv) -> np.ndarray:
    """The masks of the current step of every env, as sb3-contrib's ``get_action_masks`` reads them."""
    if isinstance(env, VecEnv):
        return np.stack(env.env_method(ACTION_MASKS_METHOD))
    return np.asarray(env.get_wrapper_attr(ACTION_MASKS_METHOD)())


def _refuse_env_without_masks(env: GymEnv) -> None:
    if not env_has_action_masks(env):
        raise UserInputError(
            "MaskableRecurrentPPO needs action masks, but the env has no action_masks() method. Add one to the "
            "env, or wrap it: sb3_contrib.common.wrappers.ActionMasker(env, mask_fn) with mask_fn(env) returning "
            "the mask of the current step. Without masks, use RecurrentPPO."
        )


class _MaskChunks:
    """Mixin over the recurrent rollout buffers: the masks of every step, chunked with the rest."""

    buffer_size: int
    n_envs: int
    pos: int
    device: th.device
    action_space: Any
    sequence_length: int
    _chunks: dict[str, Any] | None

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.action_masks = np.ones((self.buffer_size, self.n_envs, mask_size(self.action_space)), dtype=bool)

    def add(self, *args: Any, action_masks: np.ndarray | None = None, **kwargs: Any) -> None:
        if action_masks is not None:
            self.action_masks[self.pos] = action_masks.reshape(self.n_envs, -1)
        super().add(*args, **kwargs)  # type: ignore[misc]

    def _make_chunks(self) -> dict[str, Any]:
        chunks = super()._make_chunks()  # type: ignore[misc]
        chunks["action_masks"] = th.as_tensor(chunk_rows(self.action_masks, self.sequence_length), device=self.device)
        return chunks

    def _minibatch(self, idx: th.Tensor | slice) -> Any:
        samples = super()._minibatch(idx)  # type: ignore[misc]
        assert self._chunks is not None
        masks = self._chunks["action_masks"][:, idx]  # (T, n, mask_size)
        seq = samples.observations
        masks = masks.reshape(-1, masks.shape[-1])
        masked = MaskedSequenceObs(seq.obs, seq.state, seq.episode_starts, masks, seq.burn_in, seq.burn_in_gradient)
        return samples._replace(observations=masked)


class MaskableRecurrentRolloutBuffer(_MaskChunks, RecurrentRolloutBuffer):
    """:class:`~recurrent_rl.ppo.buffers.RecurrentRolloutBuffer` that also keeps each step's action masks."""


class MaskableRecurrentDictRolloutBuffer(_MaskChunks, RecurrentDictRolloutBuffer):  # type: ignore[misc]
    """:class:`~recurrent_rl.ppo.buffers.RecurrentDictRolloutBuffer` that also keeps each step's action masks."""


class MaskableRecurrentPPO(RecurrentPPO):
    """:class:`~recurrent_rl.ppo.algorithm.RecurrentPPO` with invalid-action masking (sb3-contrib's
    ``MaskablePPO`` convention; see the module docstring).

    The same parameters as :class:`RecurrentPPO`. The env must expose ``action_masks()`` and have
    a Discrete, MultiDiscrete or MultiBinary action space; both are checked before training starts.
    """

    buffer_classes: ClassVar[tuple[type[RecurrentRolloutBuffer], type[RecurrentDictRolloutBuffer]]] = (
        MaskableRecurrentRolloutBuffer,
        MaskableRecurrentDictRolloutBuffer,
    )

    def __init__(self, policy: Any, env: GymEnv | str, *args: Any, **kwargs: Any):
        super().__init__(policy, env, *args, **kwargs)
        if self.env is not None:
            check_maskable_space(self.action_space, "MaskableRecurrentPPO")
            _refuse_env_without_masks(self.env)

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        assert self.env is not None, "MaskableRecurrentPPO.learn needs an env (set_env)"
        check_maskable_space(self.action_space, "MaskableRecurrentPPO")
        _refuse_env_without_masks(self.env)
        return super()._setup_learn(*args, **kwargs)

    def _rollout_action_masks(self, env: VecEnv) -> np.ndarray:
        return check_action_masks(env_action_masks(env), self.action_space, env.num_envs, "the env's action_masks()")

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """sb3-contrib's ``predict`` with ``action_masks`` (``(n_envs, mask_size)``, True where allowed;
        None: unmasked, as sb3-contrib's MaskablePPO)."""
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)
