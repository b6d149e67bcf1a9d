"""RecurrentSAC's actor seen as the acting path that :mod:`recurrent_rl.export.onnx` exports.

The graph of a RecurrentSAC is its deterministic actor with explicit state, as
``model.predict(obs, state, episode_start, deterministic=True)`` runs it::

    obs, episode_start, state.actor.0 ... (the memory's tensors, each (L, B, W)),
    [state.actor.<n>]  (1, B, A): the previous action in [-1, 1] (prev_action=True; zeros at a start)
      -> features extractor, with the previous action -> memory step -> latent_pi -> mu
      -> tanh, rescaled to the action space's bounds
    action, next_state.actor.* (the last: the action just taken, tanh(mu), in [-1, 1])

The previous action is one more state tensor, so the runner (:mod:`recurrent_rl.export.play`)
feeds it back as it feeds the memory's. The critics are left out (a Q value needs an action);
a memory that reads the previous reward is refused by :func:`~recurrent_rl.export.onnx.export_onnx`
(the runner feeds no rewards).

Nothing of :mod:`recurrent_rl.sac` is imported: the policy is recognised by what it holds.
"""

from __future__ import annotations

from typing import Any

import torch as th
from torch import nn


def is_sac_policy(policy: Any) -> bool:
    """Whether ``policy`` is a RecurrentSAC policy (actor, critic and target critic with memories)."""
    return all(hasattr(policy, name) for name in ("actor", "critic", "critic_target", "prev_action"))


class _PrevActionMemory(nn.Module):
    """The actor's memory core, with the previous action as one more state tensor (1, B, A).

    ``step`` reads it (zero where an episode starts) beside the features and passes it on
    unchanged: the graph replaces it with the action it takes (see ``feeds_back_action``)."""

    def __init__(self, core: Any, action_dim: int, prev_action: bool):
        super().__init__()
        self.core, self.action_dim, self.prev_action = core, action_dim, prev_action
        self.memory, self.hidden_size, self.num_layers = core.memory, core.hidden_size, core.num_layers
        self.memory_kwargs = core.memory_kwargs
        self.n_state_tensors = core.n_state_tensors + (1 if prev_action else 0)

    def state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        shapes = list(self.core.state_shapes(batch))
        return [*shapes, (1, batch, self.action_dim)] if self.prev_action else shapes

    def initial_state(self, batch: int, device: Any) -> tuple[th.Tensor, ...]:
        state = tuple(self.core.initial_state(batch, device))
        return (*state, th.zeros(1, batch, self.action_dim, device=device)) if self.prev_action else state

    def step(
        self, x: th.Tensor, state: tuple[th.Tensor, ...], episode_start: th.Tensor
    ) -> tuple[th.Tensor, tuple[th.Tensor, ...]]:
        if not self.prev_action:
            return self.core.step(x, state, episode_start)
        previous = state[-1][0] * (1.0 - episode_start).unsqueeze(-1)  # (B, A): zeros where an episode starts
        out, new_state = self.core.step(th.cat([x, previous], dim=-1), state[:-1], episode_start)
        return out, (*new_state, state[-1])


class _ActorLatent(nn.Module):
    """``forward_actor``: what ``mlp_extractor`` gives the PPO graph, here the actor's ``latent_pi``."""

    def __init__(self, latent_pi: nn.Module):
        super().__init__()
        self.latent_pi = latent_pi

    def forward_actor(self, x: th.Tensor) -> th.Tensor:
        return self.latent_pi(x)


class SACActorView(nn.Module):
    """A RecurrentSAC policy's actor under the names the export reads of a RecurrentPPO policy:
    features extractor, ``actor_memory``, ``mlp_extractor.forward_actor``, ``action_net`` and
    the squashed Gaussian; no critic."""

    def __init__(self, policy: Any):
        super().__init__()
        actor = policy.actor
        encoder = actor.encoder
        self.observation_space, self.action_space = policy.observation_space, policy.action_space
        self.normalize_images = encoder.normalize_images
        self.pi_features_extractor = encoder.features_extractor
        self.share_features_extractor = True
        self.actor_memory = _PrevActionMemory(encoder.core, int(actor.mu.out_features), encoder.prev_action)
        self.feeds_back_action = bool(encoder.prev_action)
        self.critic_memory = policy.critic_memory
        self.critic_core = None
        self.critic_projection = None
        self.mlp_extractor = _ActorLatent(actor.latent_pi)
        self.action_net = actor.mu
        self.value_net = None
        self.action_dist = actor.action_dist
        self.squash_output = True
        self.log_std = None

    @property
    def device(self) -> th.device:
        return next(self.parameters()).device

    def set_training_mode(self, mode: bool) -> None:
        self.train(mode)
