"""The recurrent SAC policy: an actor and twin critics that each read the history through a memory.

::

    observation -> features extractor --+
    previous action (optional) ---------+--> memory core (MemoryCore) -> MLP heads
    previous reward (optional) ---------+

- the actor: heads -> mean and log std of a tanh-squashed Gaussian (SB3's
  ``SquashedDiagGaussianDistribution``, SAC's);
- the critic: ``n_critics`` Q heads, each on (memory output, action), over one memory;
- the target critic: a copy of the critic, memory included, moved by Polyak averaging.

``critic_memory="separate"`` (the default) gives the actor and the critic a memory each, trained
by their own losses, as Ni et al. (ICML 2022) recommend: a shared memory, trained by both
losses, made their recurrent SAC/TD3 unstable. ``"shared"`` keeps one memory, owned and trained
by the critic; the actor's heads read it detached (as SB3's SAC trains a shared features
extractor through one loss only).

Shapes: T time, W windows (batch), H memory width, A action size.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim, preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

from recurrent_rl.errors import UserInputError, check_finite_observations
from recurrent_rl.nets.memory import MemoryCore, check_memory_options, mask_state, state_leaves, state_to_numpy
from recurrent_rl.types import MemoryState, RecurrentState

CRITIC_MEMORY = ("separate", "shared")


class MemoryEncoder(nn.Module):
    """features extractor, previous action and reward -> a memory core: the history read by a network.

    :param features_extractor: SB3 features extractor of the observation
    :param observation_space: to preprocess observations as SB3 does (one-hot, image scaling)
    :param action_dim: A, the size of a previous action input
    :param prev_action: feed the previous action (zeros at an episode start)
    :param prev_reward: feed the previous reward (zero at an episode start)
    The remaining parameters are :class:`~recurrent_rl.nets.memory.MemoryCore`'s.
    """

    def __init__(
        self,
        features_extractor: BaseFeaturesExtractor,
        observation_space: spaces.Space,
        normalize_images: bool,
        action_dim: int,
        prev_action: bool,
        prev_reward: bool,
        memory: str,
        hidden_size: int,
        num_layers: int,
        gate_bias: float,
        memory_kwargs: dict[str, Any],
    ):
        super().__init__()
        self.features_extractor = features_extractor
        self.observation_space = observation_space
        self.normalize_images = normalize_images
        self.prev_action = prev_action
        self.prev_reward = prev_reward
        input_size = features_extractor.features_dim + (action_dim if prev_action else 0) + (1 if prev_reward else 0)
        self.core = MemoryCore(
            memory, input_size, hidden_size, num_layers, gate_bias=gate_bias, memory_kwargs=memory_kwargs
        )

    def features(self, obs: PyTorchObs) -> th.Tensor:
        """(N, *obs_shape) -> (N, F)."""
        preprocessed = preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images)
        return self.features_extractor(preprocessed)

    def inputs(self, features: th.Tensor, prev_action: th.Tensor | None, prev_reward: th.Tensor | None) -> th.Tensor:
        """What the memory reads at each step: features (..., F) with the chosen previous inputs."""
        parts = [features]
        if self.prev_action:
            if prev_action is None:
                raise ValueError("this memory reads the previous action: pass prev_action")
            parts.append(prev_action)
        if self.prev_reward:
            if prev_reward is None:
                raise ValueError("this memory reads the previous reward: pass prev_reward")
            parts.append(prev_reward.unsqueeze(-1))
        return th.cat(parts, dim=-1) if len(parts) > 1 else features

    def step(
        self,
        obs: PyTorchObs,
        state: MemoryState,
        episode_start: th.Tensor,
        prev_action: th.Tensor | None,
        prev_reward: th.Tensor | None,
    ) -> tuple[th.Tensor, MemoryState]:
        """One step for B columns -> output (B, H), next state."""
        return self.core.step(self.inputs(self.features(obs), prev_action, prev_reward), state, episode_start)

    def sequence(
        self,
        obs: th.Tensor,
        state: MemoryState,
        episode_starts: th.Tensor,
        prev_actions: th.Tensor | None,
        prev_rewards: th.Tensor | None,
        burn_in: int = 0,
    ) -> th.Tensor:
        """Whole windows ``obs`` (T, W, *obs_shape) -> outputs (T - burn_in, W, H) of the rows after the burn-in.

        The first ``burn_in`` rows run without gradient and only set the state that enters row
        ``burn_in`` (R2D2's burn-in): nothing computed on them reaches a loss or a gradient.
        """
        T, W = episode_starts.shape

        def rows(lo: int, hi: int) -> th.Tensor:
            features = self.features(obs[lo:hi].reshape(-1, *obs.shape[2:])).view(hi - lo, W, -1)  # (t, W, F)
            pa = None if prev_actions is None else prev_actions[lo:hi]
            pr = None if prev_rewards is None else prev_rewards[lo:hi]
            return self.inputs(features, pa, pr)

        if burn_in:
            with th.no_grad():
                _, burnt = self.core(rows(0, burn_in), state, episode_starts[:burn_in])
            assert burnt is not None
            state = burnt
        out, _ = self.core(rows(burn_in, T), state, episode_starts[burn_in:], need_final_state=False)
        return out


def _mlp(input_dim: int, output_dim: int, net_arch: list[int], activation_fn: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(*create_mlp(input_dim, output_dim, net_arch, activation_fn))


class RecurrentActor(nn.Module):
    """The actor: a memory encoder, an MLP, and the mean and log std of SAC's squashed Gaussian.

    With ``detach_memory`` (a memory shared with the critic and trained by it), the heads read
    the memory's output detached.
    """

    optimizer: th.optim.Optimizer  # set by the policy: SAC's actor optimizer

    def __init__(
        self,
        encoder: MemoryEncoder,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        detach_memory: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.detach_memory = detach_memory
        hidden = encoder.core.hidden_size
        self.latent_pi = _mlp(hidden, -1, net_arch, activation_fn)
        last = net_arch[-1] if net_arch else hidden
        self.mu = nn.Linear(last, action_dim)
        self.log_std = nn.Linear(last, action_dim)
        self.action_dist = SquashedDiagGaussianDistribution(action_dim)

    def dist_params(self, memory_out: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Memory outputs (..., H) -> mean and log std (..., A), the log std clamped as SB3's SAC."""
        if self.detach_memory:
            memory_out = memory_out.detach()
        latent = self.latent_pi(memory_out)
        return self.mu(latent), th.clamp(self.log_std(latent), LOG_STD_MIN, LOG_STD_MAX)

    def action_log_prob(self, memory_out: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Sampled (reparametrised) actions in [-1, 1] and their log-probabilities, for any leading shape."""
        mean, log_std = self.dist_params(memory_out)
        shape = mean.shape
        actions, log_prob = self.action_dist.log_prob_from_params(
            mean.reshape(-1, shape[-1]), log_std.reshape(-1, shape[-1])
        )
        return actions.view(shape), log_prob.view(shape[:-1])

    def step(
        self,
        obs: PyTorchObs,
        state: MemoryState,
        episode_start: th.Tensor,
        prev_action: th.Tensor | None = None,
        prev_reward: th.Tensor | None = None,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, MemoryState]:
        """One step for B envs: actions (B, A) in [-1, 1] and the memory's next state."""
        out, state = self.encoder.step(obs, state, episode_start, prev_action, prev_reward)
        mean, log_std = self.dist_params(out)
        actions = self.action_dist.actions_from_params(mean, log_std, deterministic=deterministic)
        return actions, state

    def forward(
        self,
        obs: th.Tensor,
        state: MemoryState,
        episode_start: th.Tensor,
        prev_action: th.Tensor | None = None,
        prev_reward: th.Tensor | None = None,
    ) -> tuple[th.Tensor, MemoryState]:
        """The deterministic policy with explicit state, as an exported graph runs it:
        ``obs`` (B, ...), ``state`` (tensors (layers, B, width)), ``episode_start`` (B,), the
        previous action (B, A) and reward (B,) when the memory reads them -> actions (B, A) in
        [-1, 1] (``policy.unscale_action`` maps them to the env's bounds) and the next state."""
        return self.step(obs, state, episode_start, prev_action, prev_reward, deterministic=True)


class RecurrentCritic(nn.Module):
    """Twin (``n_critics``) Q heads on one memory: Q_i(memory output, action)."""

    optimizer: th.optim.Optimizer  # set by the policy: SAC's critic optimizer

    def __init__(
        self,
        encoder: MemoryEncoder,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        n_critics: int,
    ):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.core.hidden_size
        self.q_networks = nn.ModuleList(
            [_mlp(hidden + action_dim, 1, net_arch, activation_fn) for _ in range(n_critics)]
        )

    def q_values(self, memory_out: th.Tensor, actions: th.Tensor) -> list[th.Tensor]:
        """Memory outputs (..., H) and actions (..., A) -> one (...,) tensor per Q head."""
        x = th.cat([memory_out, actions], dim=-1)
        return [q(x).squeeze(-1) for q in self.q_networks]


class RecurrentSACPolicy(BasePolicy):
    """Actor, critic and target critic of :class:`~recurrent_rl.sac.algorithm.RecurrentSAC`.

    :param memory: the memory type (every ``MemoryCore`` memory: ``gru``, ``lstm``, ``rnn``,
        ``mingru``, ``minlstm``, ``transformer``)
    :param hidden_size: units per memory layer
    :param num_layers: stacked memory layers
    :param critic_memory: ``"separate"`` (actor and critic own a memory each) or ``"shared"``
        (one memory, trained by the critic loss, read detached by the actor)
    :param prev_action: the memories read the previous action (zeros at an episode start)
    :param prev_reward: the memories read the previous reward (``predict`` then needs ``reward=``)
    :param gate_bias: as :class:`~recurrent_rl.nets.memory.MemoryCore`; default 1.0 for the
        LSTM's forget gate, else 0.0
    :param memory_kwargs: options of memories that take more (the attention window, ...)
    :param net_arch: hidden layers of the heads, a list for both or ``dict(pi=[...], qf=[...])``
        (SB3's convention); default ``[256, 256]`` as SB3's SAC
    Every other parameter is SB3's ``SACPolicy``'s.
    """

    actor: RecurrentActor
    critic: RecurrentCritic
    critic_target: RecurrentCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        memory: str = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        critic_memory: str = "separate",
        prev_action: bool = True,
        prev_reward: bool = False,
        gate_bias: float | None = None,
        memory_kwargs: dict[str, Any] | None = None,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        use_sde: bool = False,
    ):
        check_policy_options(memory, hidden_size, num_layers, critic_memory, use_sde)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [256, 256]
        self.net_arch = net_arch
        self.actor_arch = list(net_arch["pi"] if isinstance(net_arch, dict) else net_arch)
        self.critic_arch = list(net_arch["qf"] if isinstance(net_arch, dict) else net_arch)
        self.activation_fn = activation_fn
        self.memory = memory
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.critic_memory = critic_memory
        self.prev_action = bool(prev_action)
        self.prev_reward = bool(prev_reward)
        self.gate_bias = (1.0 if memory == "lstm" else 0.0) if gate_bias is None else float(gate_bias)
        self.memory_kwargs = dict(memory_kwargs or {})
        self.n_critics = int(n_critics)
        self.action_dim = get_action_dim(action_space)
        self._build(lr_schedule)

    def make_encoder(self) -> MemoryEncoder:
        return MemoryEncoder(
            self.make_features_extractor(),
            self.observation_space,
            self.normalize_images,
            self.action_dim,
            self.prev_action,
            self.prev_reward,
            self.memory,
            self.hidden_size,
            self.num_layers,
            self.gate_bias,
            self.memory_kwargs,
        )

    def make_critic(self) -> RecurrentCritic:
        return RecurrentCritic(
            self.make_encoder(), self.action_dim, self.critic_arch, self.activation_fn, self.n_critics
        )

    def _build(self, lr_schedule: Schedule) -> None:
        self.critic = self.make_critic()
        shared = self.critic_memory == "shared"
        encoder = self.critic.encoder if shared else self.make_encoder()
        self.actor = RecurrentActor(encoder, self.action_dim, self.actor_arch, self.activation_fn, detach_memory=shared)
        # the target critic has its own memory; it starts as a copy and follows by Polyak averaging
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)
        self.critic_target.train(False)
        owned_by_critic = {id(p) for p in self.critic.parameters()}
        actor_parameters = [p for p in self.actor.parameters() if id(p) not in owned_by_critic]
        lr = lr_schedule(1)
        self.actor.optimizer = self.optimizer_class(actor_parameters, lr=lr, **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr, **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            memory=self.memory,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            critic_memory=self.critic_memory,
            prev_action=self.prev_action,
            prev_reward=self.prev_reward,
            gate_bias=self.gate_bias,
            memory_kwargs=self.memory_kwargs,
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    def set_training_mode(self, mode: bool) -> None:
        self.actor.train(mode)
        self.critic.train(mode)
        self.training = mode

    # --- memory states --------------------------------------------------------------------------

    @property
    def critic_has_memory(self) -> bool:
        """Whether the critic's memory is its own (``critic_memory="separate"``)."""
        return self.critic_memory == "separate"

    def initial_state(self, n_envs: int) -> RecurrentState:
        """Zero memory for ``n_envs`` columns: the actor's and the critic's (empty when shared)."""
        actor = self.actor.encoder.core.initial_state(n_envs, self.device)
        critic = self.critic.encoder.core.initial_state(n_envs, self.device) if self.critic_has_memory else ()
        return RecurrentState(actor, critic)

    def stored_state_shapes(self) -> list[tuple[int, int]]:
        """``(layers, width)`` of each state tensor a replay buffer stores per step: the actor's, then
        the critic's own (the target critic starts from the critic's, as R2D2's target network does)."""
        return stored_state_shapes(
            self.memory, self.hidden_size, self.num_layers, self.memory_kwargs, self.critic_memory
        )

    # --- acting ---------------------------------------------------------------------------------

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions from a fresh memory (SB3's stateless interface); :meth:`predict` carries the memory."""
        n_envs = int(
            next(iter(observation.values())).shape[0] if isinstance(observation, dict) else observation.shape[0]
        )
        zeros = th.zeros(n_envs, self.action_dim, device=self.device) if self.prev_action else None
        reward = th.zeros(n_envs, device=self.device) if self.prev_reward else None
        state = self.actor.encoder.core.initial_state(n_envs, self.device)
        starts = th.ones(n_envs, device=self.device)
        return self.actor.step(observation, state, starts, zeros, reward, deterministic)[0]

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        reward: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Actions for one step and the state to pass to the next call, as ``RecurrentPPO.predict``.

        :param state: what the previous call returned, or None to start every env afresh. It
            holds the actor's memory tensors, each ``(num_layers, n_envs, width)``, then (with
            ``prev_action``) the action just taken, ``(n_envs, A)`` in [-1, 1]
        :param episode_start: ``(n_envs,)`` flags; where set, that env's memory is reset first
        :param reward: ``(n_envs,)`` rewards received after the previous action; needed when the
            memory reads the previous reward (``prev_reward=True``), except at episode starts
        """
        self.set_training_mode(False)
        check_finite_observations(observation, "predict()")
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        n_envs = int(obs_tensor.shape[0])  # type: ignore[union-attr]
        fresh = state is None
        memory, prev_action = self._state_from_numpy(state, n_envs)
        if episode_start is None:
            starts = np.ones(n_envs, dtype=np.float32) if fresh else np.zeros(n_envs, dtype=np.float32)
        else:
            starts = np.asarray(episode_start, dtype=np.float32).reshape(-1)
            if starts.size != n_envs:
                raise UserInputError(
                    f"episode_start has {starts.size} entries for {n_envs} observations; pass one flag per env"
                )
        starts_t = th.as_tensor(starts, device=self.device)
        keep = (1.0 - starts_t).unsqueeze(-1)
        prev_r = None
        if self.prev_reward:
            if reward is None:
                if not (starts == 1).all():
                    raise UserInputError(
                        "this policy reads the previous reward (prev_reward=True): pass predict(..., reward=r) "
                        "with the rewards the envs returned after the previous actions"
                    )
                reward = np.zeros(n_envs, dtype=np.float32)
            prev_r = th.as_tensor(np.asarray(reward, dtype=np.float32).reshape(n_envs), device=self.device) * keep[:, 0]
        prev_a = None if prev_action is None else prev_action * keep
        with th.no_grad():
            actions, memory = self.actor.step(obs_tensor, memory, starts_t, prev_a, prev_r, deterministic)
        scaled = actions.cpu().numpy().reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        unscaled = self.unscale_action(scaled)
        if not vectorized_env:
            unscaled = unscaled.squeeze(axis=0)
        out_state = tuple(state_to_numpy(memory))
        if self.prev_action:
            out_state = (*out_state, actions.cpu().numpy().reshape(n_envs, self.action_dim))
        return unscaled, out_state

    def _state_from_numpy(self, state: Any, n_envs: int) -> tuple[MemoryState, th.Tensor | None]:
        core = self.actor.encoder.core
        zero_action = th.zeros(n_envs, self.action_dim, device=self.device) if self.prev_action else None
        if state is None:
            return core.initial_state(n_envs, self.device), zero_action
        expected = [*core.state_shapes(n_envs)] + ([(n_envs, self.action_dim)] if self.prev_action else [])
        shapes = [tuple(np.shape(s)) for s in state] if isinstance(state, (tuple, list)) else None
        if shapes != expected:
            got = shapes if shapes is not None else f"a {type(state).__name__}"
            raise UserInputError(
                f"predict() got a state of shape {got}, but this {self.memory} policy with {n_envs} observation(s) "
                f"needs {expected}: pass the state returned by the previous predict() call, or state=None"
            )
        tensors = [th.as_tensor(np.asarray(s), dtype=th.float32, device=self.device) for s in state]
        n = core.n_state_tensors
        return tuple(tensors[:n]), (tensors[n] if self.prev_action else None)

    def memory_norms(self, state: MemoryState) -> float:
        """Mean L2 norm per column of a memory state's tensors (for the ``memory/`` logs)."""
        return float(np.mean([leaf.norm(dim=-1).mean().item() for leaf in state_leaves(state)]))


def check_policy_options(memory: Any, hidden_size: Any, num_layers: Any, critic_memory: Any, use_sde: Any) -> None:
    """Raise :class:`~recurrent_rl.errors.UserInputError` naming a bad policy option."""
    try:
        check_memory_options(memory, hidden_size, num_layers)
    except ValueError as error:
        raise UserInputError(str(error)) from None
    if critic_memory not in CRITIC_MEMORY:
        raise UserInputError(
            f"critic_memory={critic_memory!r} is not valid for RecurrentSAC; choose one of {list(CRITIC_MEMORY)}"
        )
    if use_sde:
        raise UserInputError("RecurrentSAC does not support gSDE (use_sde=True): use use_sde=False")


def stored_state_shapes(
    memory: str, hidden_size: int, num_layers: int, memory_kwargs: dict[str, Any] | None, critic_memory: str
) -> list[tuple[int, int]]:
    """The ``(layers, width)`` of each stored state tensor (the actor's memory, then the critic's own)."""
    core = MemoryCore(memory, 1, hidden_size, num_layers, memory_kwargs=memory_kwargs)
    one = [(layers, width) for layers, _, width in core.state_shapes(1)]
    return one * (2 if critic_memory == "separate" else 1)


def reset_columns(state: MemoryState, episode_start: th.Tensor) -> MemoryState:
    """The state a memory reads at a step: zeros in the columns where an episode starts."""
    return mask_state(state, 1.0 - episode_start.float())
