"""The acting path of a recurrent policy as one module of tensors in, tensors out: what
:mod:`recurrent_rl.export.onnx` traces into an ONNX graph.

VecNormalize's observation statistics are folded in as buffers (:func:`obs_normalization`), SB3's
preprocessing follows, then the features extractor, one step of the memory core (its plain-torch
``step``: the cpu-kernels backend's compiled operators are never called) and the MLP head, and the
deterministic action as ``predict`` returns it. The order of the inputs and outputs is in
:mod:`recurrent_rl.export.onnx`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    SquashedDiagGaussianDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.preprocessing import preprocess_obs
from torch import nn

from recurrent_rl.errors import UserInputError


class ExportError(UserInputError):
    """A policy (or a part of it) that cannot be exported as asked."""


# --- the VecNormalize statistics folded into the graph ---------------------------------------------


@dataclass(frozen=True)
class ObsNormalization:
    """VecNormalize's observation statistics for one observation (one Dict entry):
    ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` in float64, as SB3 does."""

    mean: np.ndarray  # float64, the observation's shape
    var: np.ndarray
    clip_obs: float
    epsilon: float


def obs_normalization(vecnormalize: Any, observation_space: spaces.Space) -> dict[str | None, ObsNormalization]:
    """The per-entry statistics of ``vecnormalize`` (a ``VecNormalize`` or the ``vecnormalize``
    mapping of a safe file, see :mod:`recurrent_rl.export.safe`) for a policy's observation space:
    ``{None: ...}`` for a single observation, ``{key: ...}`` for the normalised Dict entries, ``{}``
    without observation normalisation."""
    if vecnormalize is None:
        return {}
    if not (vecnormalize["norm_obs"] if isinstance(vecnormalize, dict) else vecnormalize.norm_obs):
        return {}  # rewards only: SB3 keeps no observation statistics (obs_rms) then
    if isinstance(vecnormalize, dict):
        norm_obs, clip_obs, epsilon = vecnormalize["norm_obs"], vecnormalize["clip_obs"], vecnormalize["epsilon"]
        keys, rms = vecnormalize.get("norm_obs_keys"), vecnormalize["obs_rms"]
        if isinstance(observation_space, spaces.Dict):
            rms = {key: (np.asarray(r["mean"]), np.asarray(r["var"])) for key, r in rms.items()}
        else:
            rms = (np.asarray(rms["mean"]), np.asarray(rms["var"]))
    else:
        norm_obs, clip_obs, epsilon = vecnormalize.norm_obs, vecnormalize.clip_obs, vecnormalize.epsilon
        keys, rms = getattr(vecnormalize, "norm_obs_keys", None), vecnormalize.obs_rms
        if isinstance(rms, dict):
            rms = {key: (r.mean, r.var) for key, r in rms.items()}
        else:
            rms = (rms.mean, rms.var)
    if not norm_obs:
        return {}

    def entry(stats: tuple[np.ndarray, np.ndarray], space: spaces.Space, name: str) -> ObsNormalization:
        mean, var = (np.asarray(s, dtype=np.float64) for s in stats)
        shape = tuple(getattr(space, "shape", ()) or ())
        if mean.shape != shape and len(shape) == 3 and mean.shape == (shape[1], shape[2], shape[0]):
            # statistics of channel-last images, the policy sees them channel-first (VecTransposeImage)
            mean, var = mean.transpose(2, 0, 1), var.transpose(2, 0, 1)
        if mean.shape != shape or var.shape != shape:
            raise ExportError(
                f"the VecNormalize statistics{name} have shape {mean.shape}, but the policy's observations "
                f"{shape}: they belong to another env"
            )
        return ObsNormalization(np.ascontiguousarray(mean), np.ascontiguousarray(var), float(clip_obs), float(epsilon))

    if isinstance(observation_space, spaces.Dict):
        if not isinstance(rms, dict):
            raise ExportError("the VecNormalize statistics are for a single observation, the policy takes a Dict")
        chosen = list(rms) if keys is None else list(keys)
        return {key: entry(rms[key], observation_space[key], f" of {key!r}") for key in chosen}
    if isinstance(rms, dict):
        raise ExportError("the VecNormalize statistics are for Dict observations, the policy takes a single one")
    return {None: entry(rms, observation_space, "")}


# --- the module that is traced ---------------------------------------------------------------------


def input_dtype(space: spaces.Space) -> np.dtype:
    """The dtype of an observation input: the space's own (what the env gives)."""
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int64)
    return np.dtype(space.dtype)


class _Observation(nn.Module):
    """One observation input -> what SB3 hands the features extractor after ``predict``'s
    VecNormalize (float64, then float32) and ``preprocess_obs``."""

    mean: th.Tensor  # buffers (float64), with normalisation only
    scale: th.Tensor

    def __init__(self, space: spaces.Space, normalization: ObsNormalization | None, normalize_images: bool):
        super().__init__()
        self.space, self.normalize_images = space, normalize_images
        self.normalized = normalization is not None
        if normalization is not None:
            self.register_buffer("mean", th.as_tensor(normalization.mean, dtype=th.float64))
            self.register_buffer("scale", th.as_tensor(np.sqrt(normalization.var + normalization.epsilon)))
            self.clip_obs = normalization.clip_obs

    def forward(self, obs: th.Tensor) -> th.Tensor:
        if self.normalized:
            # VecNormalize: float64 arithmetic, then .astype(np.float32)
            obs = ((obs.to(th.float64) - self.mean) / self.scale).clamp(-self.clip_obs, self.clip_obs).to(th.float32)
        return preprocess_obs(obs, self.space, normalize_images=self.normalize_images)  # type: ignore[return-value]


class _MemoryStep(nn.Module):
    """``MemoryCore.step`` (plain torch) as a module of tensors: (x, episode_start, *state) -> (out, *state)."""

    def __init__(self, core: Any):
        super().__init__()
        self.core = core

    def forward(self, x: th.Tensor, episode_start: th.Tensor, *state: th.Tensor) -> tuple[th.Tensor, ...]:
        out, new_state = self.core.step(x, tuple(state), episode_start)
        return (out, *new_state)


class _Features(nn.Module):
    """A features extractor called on a tuple of preprocessed inputs (a dict rebuilt for Dict spaces)."""

    def __init__(self, extractor: nn.Module, keys: list[str] | None):
        super().__init__()
        self.extractor, self.keys = extractor, keys

    def forward(self, *obs: th.Tensor) -> th.Tensor:
        if self.keys is None:
            return self.extractor(obs[0])
        return self.extractor(dict(zip(self.keys, obs)))


class _Head(nn.Module):
    """Latent network + output layer: ``mlp_extractor.forward_actor`` / ``forward_critic`` then
    ``action_net`` / ``value_net``."""

    def __init__(self, mlp_extractor: Any, which: str, out: nn.Module):
        super().__init__()
        self.mlp_extractor, self.which, self.out = mlp_extractor, which, out

    def forward(self, x: th.Tensor) -> th.Tensor:
        forward = self.mlp_extractor.forward_actor if self.which == "actor" else self.mlp_extractor.forward_critic
        return self.out(forward(x))


class ActingGraph(nn.Module):
    """The acting path of a :class:`~recurrent_rl.nets.policies.RecurrentActorCriticPolicy` as one
    module of tensors in and tensors out (see the module docstring for the order)."""

    low: th.Tensor  # Box action bounds (buffers)
    high: th.Tensor

    def __init__(
        self,
        policy: Any,
        normalization: dict[str | None, ObsNormalization],
        include_value: bool,
        include_distribution: bool,
    ):
        super().__init__()
        space = policy.observation_space
        self.keys: list[str] | None = list(space.spaces) if isinstance(space, spaces.Dict) else None
        entries = [(key, space[key]) for key in self.keys] if self.keys is not None else [(None, space)]
        self.observations = nn.ModuleList(
            _Observation(sub, normalization.get(key), policy.normalize_images) for key, sub in entries
        )
        self.pi_features = _Features(policy.pi_features_extractor, self.keys)
        self.vf_features = (
            None if policy.share_features_extractor else _Features(policy.vf_features_extractor, self.keys)
        )
        self.actor_memory = _MemoryStep(policy.actor_memory)
        self.n_actor_state = policy.actor_memory.n_state_tensors
        self.critic_memory = policy.critic_memory
        self.include_value, self.include_distribution = include_value, include_distribution
        self.critic_core = _MemoryStep(policy.critic_core) if include_value and policy.critic_core is not None else None
        self.n_critic_state = policy.critic_core.n_state_tensors if self.critic_core is not None else 0
        self.critic_projection = policy.critic_projection if include_value else None
        self.actor_head = _Head(policy.mlp_extractor, "actor", policy.action_net)
        self.critic_head = _Head(policy.mlp_extractor, "critic", policy.value_net) if include_value else None
        self.action_dist = policy.action_dist
        self.action_space = policy.action_space
        self.squash_output = bool(policy.squash_output)
        if isinstance(self.action_space, spaces.Box):
            self.register_buffer("low", th.as_tensor(self.action_space.low, dtype=th.float32))
            self.register_buffer("high", th.as_tensor(self.action_space.high, dtype=th.float32))
        self.log_std = getattr(policy, "log_std", None) if include_distribution else None
        # RecurrentSAC's actor (export/sac_actor.py): its last state tensor is the action just taken
        self.feeds_back_action = bool(getattr(policy, "feeds_back_action", False))

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, ...]:
        n_obs = len(self.observations)
        obs = [module(x) for module, x in zip(self.observations, inputs[:n_obs])]
        episode_start = (inputs[n_obs] != 0).to(th.float32)  # (B,): 1 resets the memory
        states = inputs[n_obs + 1 :]
        actor_state, critic_state = states[: self.n_actor_state], states[self.n_actor_state :]

        pi_features = self.pi_features(*obs)  # (B, F)
        actor_out, *next_actor = self.actor_memory(pi_features, episode_start, *actor_state)  # (B, H)
        action_params = self.actor_head(actor_out)  # (B, A) logits or mean
        if self.feeds_back_action:  # the next step reads this action, in [-1, 1], as predict returns it
            next_actor[-1] = th.tanh(action_params).unsqueeze(0)  # (1, B, A)
        outputs = [self.deterministic_action(action_params), *next_actor]
        if self.include_value:
            vf_features = self.vf_features(*obs) if self.vf_features is not None else pi_features
            if self.critic_core is not None:
                critic_in, *next_critic = self.critic_core(vf_features, episode_start, *critic_state)
                outputs += next_critic
            elif self.critic_memory == "shared":
                critic_in = actor_out
            else:
                assert self.critic_projection is not None
                critic_in = self.critic_projection(vf_features)
            assert self.critic_head is not None
            outputs.append(self.critic_head(critic_in).squeeze(-1))  # (B,)
        if self.include_distribution:
            outputs += self.distribution_params(action_params)
        return tuple(outputs)

    def deterministic_action(self, params: th.Tensor) -> th.Tensor:
        """SB3's ``distribution.mode()`` and ``predict``'s post-processing."""
        dist, space = self.action_dist, self.action_space
        if isinstance(dist, CategoricalDistribution):
            return th.argmax(th.softmax(params, dim=-1), dim=-1)  # (B,) int64
        if isinstance(dist, MultiCategoricalDistribution):
            blocks = th.split(params, list(dist.action_dims), dim=1)
            return th.stack([th.argmax(th.softmax(b, dim=-1), dim=-1) for b in blocks], dim=1)  # (B, k)
        if isinstance(dist, BernoulliDistribution):
            return th.round(th.sigmoid(params))  # (B, n) float32
        if isinstance(
            dist, (SquashedDiagGaussianDistribution, StateDependentNoiseDistribution, DiagGaussianDistribution)
        ):
            squashed = isinstance(dist, SquashedDiagGaussianDistribution) or (
                isinstance(dist, StateDependentNoiseDistribution) and dist.bijector is not None
            )
            action = th.tanh(params) if squashed else params
            action = action.reshape(-1, *space.shape)
            if self.squash_output:  # predict(): unscale_action from [-1, 1] to [low, high]
                return self.low + (0.5 * (action + 1.0) * (self.high - self.low))
            return th.maximum(th.minimum(action, self.high), self.low)  # predict(): np.clip to the bounds
        raise ExportError(f"cannot export the deterministic action of {type(dist).__name__}")

    def distribution_params(self, params: th.Tensor) -> list[th.Tensor]:
        dist = self.action_dist
        if isinstance(dist, CategoricalDistribution):
            return [th.log_softmax(params, dim=-1)]
        if isinstance(dist, MultiCategoricalDistribution):
            return [th.cat([th.log_softmax(b, dim=-1) for b in th.split(params, list(dist.action_dims), dim=1)], dim=1)]
        if isinstance(dist, BernoulliDistribution):
            return [params]
        assert self.log_std is not None
        return [params, th.ones_like(params) * self.log_std]  # DiagGaussian: mean, log_std


def distribution_output_names(policy: Any) -> list[str]:
    """The names of the distribution's parameters in the graph (``include_distribution=True``)."""
    dist = policy.action_dist
    if isinstance(dist, StateDependentNoiseDistribution):
        raise ExportError(
            "include_distribution is not available for gSDE policies (use_sde=True): their noise depends on a "
            "matrix sampled outside the policy; export without include_distribution"
        )
    if isinstance(dist, (CategoricalDistribution, MultiCategoricalDistribution, BernoulliDistribution)):
        return ["logits"]
    return ["mean", "log_std"]
