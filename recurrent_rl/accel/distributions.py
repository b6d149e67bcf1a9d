"""The categorical action distribution in fewer torch operations than ``torch.distributions``'.

SB3's ``CategoricalDistribution`` (Discrete actions) and ``MultiCategoricalDistribution``
(MultiDiscrete) wrap ``torch.distributions.Categorical``. At the sizes of a PPO rollout step (8
envs, a few actions) every torch operation costs a few microseconds whatever its size, and
torch's Categorical spends many of them: ``logsumexp`` (five kernels) to normalise the logits,
``multinomial`` to sample, and a broadcast before the ``gather`` of ``log_prob``. With 8 envs,
2 actions and one thread, :class:`LeanCategorical` takes about a quarter of the time for sample +
``log_prob`` at a rollout step, and about 60% for ``log_prob`` + entropy forward and backward
over a minibatch of 256.

:class:`LeanCategorical` is a ``torch.distributions.Categorical`` (SB3's wrappers, ``probs``,
``mode``, ``entropy``, ``expand`` ... all work) that differs in three places:

- the logits are normalised by one ``log_softmax`` instead of ``logits - logsumexp(logits)``
  (the same values up to float rounding);
- ``sample`` inverts the cumulative distribution at one uniform number per sample: the same
  distribution as ``multinomial``'s, from a different draw of the random stream;
- ``log_prob`` of one action per distribution is one ``gather``.

Arguments are not validated (torch's checks cost as much again): the policy's logits come from
its own finite weights, the optimizer refuses non-finite gradients, and observations are checked
(``errors.check_finite_observations``).
"""

from __future__ import annotations

from typing import Any

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    Distribution as SB3Distribution,
    MultiCategoricalDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import Categorical, Distribution

from recurrent_rl.accel import torch_private


class LeanCategorical(Categorical):
    """``Categorical(logits=logits)`` with a cheaper construction, ``sample`` and ``log_prob``."""

    def __init__(self, logits: th.Tensor) -> None:
        if logits.dim() < 1:
            raise ValueError("`logits` parameter must be at least one-dimensional.")
        self.logits = F.log_softmax(logits, dim=-1)  # normalised, as Categorical's own
        self._param = self.logits
        self._num_events = logits.size(-1)
        torch_private.init_distribution_unchecked(self, logits.shape[:-1])

    def expand(
        self, batch_shape: th.Size | list[int] | tuple[int, ...], _instance: LeanCategorical | None = None
    ) -> LeanCategorical:
        new = _instance if _instance is not None else LeanCategorical.__new__(LeanCategorical)
        return super().expand(batch_shape, new)

    def sample(self, sample_shape: th.Size | list[int] | tuple[int, ...] = th.Size()) -> th.Tensor:
        """Draws by inversion: the first action whose cumulative probability reaches ``u ~ U[0, 1)``."""
        shape = th.Size(sample_shape) + self.batch_shape + (1,)
        with th.no_grad():
            cdf = self.probs.cumsum(-1)
            u = th.rand(shape, dtype=cdf.dtype, device=cdf.device)
            # count of entries below u; clamped for a last cdf entry rounded below 1 (u above it)
            return (cdf < u).sum(-1).clamp_(max=self._num_events - 1)

    def log_prob(self, value: th.Tensor) -> th.Tensor:
        if value.shape == self.batch_shape:
            return self.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)
        return super().log_prob(value)  # other shapes broadcast, as torch's


def lean_action_distribution(policy: Any, latent_pi: th.Tensor) -> SB3Distribution:
    """The policy's action distribution of ``latent_pi``: SB3's, with :class:`LeanCategorical`
    inside SB3's (Multi)Categorical distributions, and torch's argument validation off for the
    others.

    torch.distributions checks every parameter tensor at construction and every sample at
    ``log_prob`` (constraint checks of a few tensor ops each): about a third of what an 8-env
    action distribution costs at construction, and a similar amount at each ``log_prob``, paid at
    every rollout step and gradient step. What it guards against, non-finite parameters,
    cannot come from the policy's own weights (the optimizer refuses non-finite gradients:
    ``NonFiniteLossError``) and is checked on the observations instead
    (``errors.check_finite_observations``).
    """
    action_dist = policy.action_dist
    if type(action_dist) is CategoricalDistribution:
        action_dist.distribution = LeanCategorical(policy.action_net(latent_pi))
        return action_dist
    if type(action_dist) is MultiCategoricalDistribution:
        logits = th.split(policy.action_net(latent_pi), list(action_dist.action_dims), dim=1)
        action_dist.distribution = [LeanCategorical(part) for part in logits]
        return action_dist
    previous = torch_private.default_validation()
    Distribution.set_default_validate_args(False)
    try:
        distribution = ActorCriticPolicy._get_action_dist_from_latent(policy, latent_pi)
    finally:
        Distribution.set_default_validate_args(previous)
    # The instances read the class default again after construction: switch them off for
    # log_prob too (one torch distribution, or a list of them for MultiDiscrete).
    inner = getattr(distribution, "distribution", None)
    for part in inner if isinstance(inner, list) else [inner]:
        if isinstance(part, Distribution):
            torch_private.disable_validation(part)
    return distribution
