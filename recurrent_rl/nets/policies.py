"""Recurrent actor-critic policy on SB3's policy machinery.

features extractor (SB3's Flatten / NatureCNN / Combined) -> memory core(s) -> MLP heads
(SB3's ``MlpExtractor``) -> SB3 action distribution and value head.

The critic reads the observation history through its own memory (``critic_memory="separate"``,
the default), through the actor's memory (``"shared"``), or not at all (``"none"``: a linear
projection of the current features replaces the memory, as in sb3-contrib).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    MlpExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from recurrent_rl.errors import check_finite_observations, check_spaces
from recurrent_rl.nets.backend import Backend, check_backend, resolve_backend
from recurrent_rl.nets.contrib import translate_contrib_options
from recurrent_rl.nets.guards import refuse_non_finite_steps
from recurrent_rl.nets.masking import check_action_masks, masked_distribution
from recurrent_rl.nets.memory import MemoryCore, state_to_numpy
from recurrent_rl.sequences import map_obs
from recurrent_rl.types import MemoryState, RecurrentState, SequenceObs

CRITIC_MEMORY = ("separate", "shared", "none")


class RecurrentActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic policy with a memory core between the features extractor and the heads.

    :param memory: ``"gru"``, ``"lstm"`` or ``"rnn"`` (Elman, tanh)
    :param hidden_size: units per memory layer
    :param num_layers: stacked memory layers
    :param critic_memory: ``"separate"`` (own core), ``"shared"`` (reads the actor's core) or
        ``"none"`` (no memory for the critic)
    :param detach_critic_memory: with ``critic_memory="shared"``, the critic reads the actor's
        memory output detached, so the value loss does not train the actor's memory
        (sb3-contrib's ``shared_lstm=True``); default False: the value loss trains it too
    :param dropout: dropout between stacked memory layers in training mode (``num_layers`` > 1);
        sb3-contrib's ``lstm_kwargs=dict(dropout=...)``
    :param gate_bias: initial bias added to the GRU update gate / LSTM forget gate (see
        :class:`recurrent_rl.nets.memory.MemoryCore`); 0 keeps PyTorch's initialisation. Default
        (None): 1.0 for ``lstm`` (the forget-gate bias of Gers et al., 2000 and Jozefowicz et al.,
        2015), 0.0 for ``gru`` and ``rnn``
    :param memory_kwargs: options of memories that take more than the ones above (see
        :class:`recurrent_rl.nets.memory.MemoryCore`)
    :param backend: ``"auto"`` (default), ``"torch"`` or ``"cpu-kernels"``, or a backend object:
        how the memory cores, heads, optimizer and action distribution are computed (see
        :mod:`recurrent_rl.nets.backend`); the results are the same to float rounding
    :param kernel_threads: the speed backend's threads for the compiled memory layers: 1, 2 or
        ``"auto"`` (see ``CpuKernels``); None (default): its process default. A choice for this
        machine, like torch's thread count
    sb3-contrib's names (``lstm_hidden_size``, ``n_lstm_layers``, ``enable_critic_lstm``,
    ``shared_lstm``, ``lstm_kwargs``) are accepted with sb3-contrib's meaning and imply
    ``memory="lstm"`` and sb3-contrib's LSTM initialisation (``gate_bias=0`` unless given); see
    :mod:`recurrent_rl.nets.contrib`. ``hidden_size`` stays 64 where sb3-contrib's default is 256.
    Every other parameter is SB3's ``ActorCriticPolicy``'s (``net_arch``, ``activation_fn``,
    ``ortho_init``, ``features_extractor_class``, ...). ``ortho_init`` re-initialises the
    features extractor and heads, never the memory cores (they keep PyTorch's default init).
    """

    default_memory = "gru"
    default_extractor: type[BaseFeaturesExtractor] = FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        memory: str | None = None,
        hidden_size: int | None = None,
        num_layers: int | None = None,
        critic_memory: str | None = None,
        gate_bias: float | None = None,
        backend: str | Backend = "auto",
        memory_kwargs: dict[str, Any] | None = None,
        kernel_threads: int | str | None = None,
        detach_critic_memory: bool = False,
        dropout: float | None = None,
        **kwargs: Any,
    ):
        check_spaces(observation_space, action_space, type(self).__name__)
        # sb3-contrib's keywords (lstm_hidden_size, ...) -> ours; None: not given
        default_memory = "lstm" if type(self) is RecurrentActorCriticPolicy else self.default_memory
        options = translate_contrib_options(
            kwargs,
            memory,
            hidden_size,
            num_layers,
            critic_memory,
            detach_critic_memory,
            dropout,
            default_memory,
            gate_bias,
        )
        gate_bias = options.gate_bias
        memory = self.default_memory if options.memory is None else options.memory
        hidden_size = 64 if options.hidden_size is None else options.hidden_size
        num_layers = 1 if options.num_layers is None else options.num_layers
        critic_memory = "separate" if options.critic_memory is None else options.critic_memory
        dropout = 0.0 if options.dropout is None else options.dropout
        detach_critic_memory = bool(options.detach_critic_memory)
        if critic_memory not in CRITIC_MEMORY:
            raise ValueError(f"critic_memory={critic_memory!r} is not valid; choose one of {list(CRITIC_MEMORY)}")
        if detach_critic_memory and critic_memory != "shared":
            raise ValueError(
                f"detach_critic_memory=True detaches the critic from the actor's memory, which needs "
                f"critic_memory='shared' (got {critic_memory!r})"
            )
        if critic_memory == "shared" and not kwargs.get("share_features_extractor", True):
            raise ValueError(
                "critic_memory='shared' reads the actor's memory, so the critic's own features extractor "
                "would be unused: use share_features_extractor=True, or critic_memory='separate'"
            )
        kwargs.setdefault("features_extractor_class", self.default_extractor)
        check_backend(backend)
        self.backend, self.kernel_threads = backend, kernel_threads
        # Built on the CPU; "auto" is resolved again when the policy moves to its device (_apply).
        self._backend: Backend = resolve_backend(backend, "cpu", kernel_threads)
        # what the user asked for: the backend chooses the optimizer again after a move (_apply)
        self._asked_optimizer = (kwargs.get("optimizer_class"), kwargs.get("optimizer_kwargs"))
        optimizer_class, optimizer_kwargs = self._backend.optimizer(*self._asked_optimizer)
        if optimizer_class is not None:
            kwargs["optimizer_class"] = optimizer_class
        if optimizer_kwargs is not None:
            kwargs["optimizer_kwargs"] = optimizer_kwargs
        if isinstance(observation_space, spaces.Dict) and kwargs["features_extractor_class"] in (
            FlattenExtractor,
            NatureCNN,
        ):
            raise ValueError(
                "Dict observation spaces need a multi-input policy: use 'MultiInputGruPolicy', "
                "'MultiInputLstmPolicy' or 'MultiInputRnnPolicy' (or features_extractor_class=CombinedExtractor)"
            )
        extractor = kwargs["features_extractor_class"]
        if extractor is CombinedExtractor and not isinstance(observation_space, spaces.Dict):
            raise ValueError(
                f"multi-input policies (CombinedExtractor) need Dict observations, but the env's are "
                f"{observation_space}: use 'MlpGruPolicy', 'MlpLstmPolicy' or 'MlpRnnPolicy'"
            )
        normalized = not kwargs.get("normalize_images", True)  # float images already in [0, 1]
        if extractor is NatureCNN and not is_image_space(observation_space, normalized_image=normalized):
            raise ValueError(
                f"CNN policies (NatureCNN) need image observations (a uint8 Box of shape (C, H, W) or "
                f"(H, W, C)), but the env's are {observation_space}: use 'MlpGruPolicy', 'MlpLstmPolicy' "
                "or 'MlpRnnPolicy'"
            )
        # Plain attributes may be set before nn.Module.__init__; _build (called by the parent
        # constructor) needs them.
        self.memory = memory
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.critic_memory = critic_memory
        self.detach_critic_memory = detach_critic_memory
        self.dropout = dropout
        if gate_bias is None:
            # LSTM forget-gate bias 1 (Jozefowicz et al., 2015): on CartPoleNoVel (zoo settings,
            # 100k steps) the LSTM reaches 500 with it and stalls below 300 with torch's init.
            gate_bias = 1.0 if memory == "lstm" else 0.0
        self.gate_bias = gate_bias
        self.memory_kwargs = dict(memory_kwargs or {})
        # validates the memory options before SB3 builds anything
        MemoryCore(memory, 1, hidden_size, num_layers, dropout, gate_bias=gate_bias, memory_kwargs=self.memory_kwargs)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    # --- construction -----------------------------------------------------------------------

    def _build_mlp_extractor(self) -> None:
        # Called by ActorCriticPolicy._build before the heads, ortho init and the optimizer, so
        # the memory cores are in the optimizer and are left out of the ortho re-init.
        core = (self.memory, self.features_dim, self.hidden_size, self.num_layers, self.dropout)
        self.actor_memory = MemoryCore(*core, gate_bias=self.gate_bias, memory_kwargs=self.memory_kwargs)
        self.critic_core: MemoryCore | None = None
        self.critic_projection: nn.Linear | None = None
        if self.critic_memory == "separate":
            self.critic_core = MemoryCore(*core, gate_bias=self.gate_bias, memory_kwargs=self.memory_kwargs)
        elif self.critic_memory == "none":
            self.critic_projection = nn.Linear(self.features_dim, self.hidden_size)
        self.mlp_extractor = MlpExtractor(
            self.hidden_size, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device
        )

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        refuse_non_finite_steps(self.optimizer)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            memory=self.memory,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            critic_memory=self.critic_memory,
            gate_bias=self.gate_bias,
            backend=self.backend,
            kernel_threads=self.kernel_threads,
            memory_kwargs=self.memory_kwargs,
            detach_critic_memory=self.detach_critic_memory,
            dropout=self.dropout,
        )
        return data

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> RecurrentActorCriticPolicy:
        # .to(device), .cpu(), .cuda(), .double() ... come through here: "auto" follows the device
        result = super()._apply(fn, *args, **kwargs)
        if getattr(self, "backend", None) == "auto":
            before = self._backend.name
            self._backend = resolve_backend("auto", self.device, getattr(self, "kernel_threads", None))
            if self._backend.name != before and hasattr(self, "optimizer"):
                self._choose_optimizer_again()
        return result

    def _choose_optimizer_again(self) -> None:
        """The optimizer the new backend chooses (SB3's Adam after a move to CUDA, where the CPU
        backend's ``PolicyAdam`` would add a second norm and a host sync per step), with the old
        one's state (moments, steps, learning rate) moved to the parameters' device."""
        optimizer_class, optimizer_kwargs = self._backend.optimizer(*self._asked_optimizer)
        optimizer_class = optimizer_class or th.optim.Adam  # SB3's defaults (ActorCriticPolicy)
        if optimizer_kwargs is None:
            optimizer_kwargs = {"eps": 1e-5} if optimizer_class is th.optim.Adam else {}
        old = self.optimizer
        if type(old) is optimizer_class and all(old.defaults.get(k) == v for k, v in optimizer_kwargs.items()):
            return
        new = optimizer_class(self.parameters(), lr=old.param_groups[0]["lr"], **optimizer_kwargs)  # type: ignore[call-arg]
        state = old.state_dict()
        fresh = new.state_dict()["param_groups"]
        # the new class's settings, the old run's learning rate and parameter ids
        state["param_groups"] = [
            {**f, "lr": o["lr"], "params": o["params"]} for f, o in zip(fresh, state["param_groups"], strict=True)
        ]
        new.load_state_dict(state)  # casts and moves the state to each parameter's device
        refuse_non_finite_steps(new)
        self.optimizer = new

    @property
    def backend_name(self) -> str:
        """The backend in use (``"torch"`` or ``"cpu-kernels"``; ``backend`` is what was asked for)."""
        return self._backend.name

    def set_training_mode(self, mode: bool) -> None:
        # SB3 calls this on every predict(); walking the module tree each time costs more than
        # the memory step itself, so only walk it when the mode changes.
        if self.training != mode:
            super().set_training_mode(mode)

    def initial_state(self, n_envs: int) -> RecurrentState:
        """Zero memory for ``n_envs`` columns."""
        critic = self.critic_core.initial_state(n_envs, self.device) if self.critic_core is not None else ()
        return RecurrentState(self.actor_memory.initial_state(n_envs, self.device), critic)

    # --- the two ways through the memory: one step (rollout) or whole chunks (update) -------

    def _features(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return features, features  # type: ignore[return-value]
        return features  # type: ignore[return-value]

    def _critic_input(
        self, vf_features: th.Tensor, actor_out: th.Tensor | None, critic_out: th.Tensor | None
    ) -> th.Tensor:
        """What the critic's head reads: its own memory's output, the actor's, or a projection."""
        if self.critic_memory == "separate":
            return critic_out  # type: ignore[return-value]
        if self.critic_memory == "shared":
            if self.detach_critic_memory:
                return actor_out.detach()  # type: ignore[union-attr]
            return actor_out  # type: ignore[return-value]
        return self.critic_projection(vf_features)  # type: ignore[misc]

    def _latents(
        self, actor_in: th.Tensor | None, critic_in: th.Tensor | None
    ) -> tuple[th.Tensor | None, th.Tensor | None]:
        """(latent_pi, latent_vf) of the two heads; a head given None is skipped (None out)."""
        extractor = self.mlp_extractor
        return (
            None if actor_in is None else extractor.forward_actor(actor_in),
            None if critic_in is None else extractor.forward_critic(critic_in),
        )

    def _step_latents(
        self, obs: PyTorchObs, state: RecurrentState, episode_start: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, RecurrentState]:
        """One step for B envs -> (latent_pi (B, P), latent_vf (B, V), next state)."""
        pi_features, vf_features = self._features(obs)  # (B, F)
        critic_state, critic_out = state.critic, None
        if self.critic_core is not None:
            (actor_out, actor_state), (critic_out, critic_state) = self._backend.step_cores(
                [self.actor_memory, self.critic_core],
                [pi_features, vf_features],
                [state.actor, state.critic],
                episode_start,
            )
        else:
            actor_out, actor_state = self._step(self.actor_memory, pi_features, state.actor, episode_start)  # (B, H)
        latent_pi, latent_vf = self._latents(actor_out, self._critic_input(vf_features, actor_out, critic_out))
        return latent_pi, latent_vf, RecurrentState(actor_state, critic_state)  # type: ignore[return-value]

    def _run_cores(
        self,
        pi_features: th.Tensor,
        vf_features: th.Tensor,
        state: RecurrentState,
        episode_starts: th.Tensor,
        need_final_state: bool = True,
    ) -> tuple[th.Tensor, th.Tensor | None, RecurrentState | None]:
        """Features ``(T*B, F)`` through the memory cores from ``state`` -> actor output (T*B, H),
        critic memory output (or None) and the final state (None unless ``need_final_state``)."""
        T, B = episode_starts.shape
        cores, xs, states = [self.actor_memory], [pi_features.view(T, B, -1)], [state.actor]
        if self.critic_core is not None:
            cores.append(self.critic_core)
            xs.append(vf_features.view(T, B, -1))
            states.append(state.critic)
        outs = self._backend.forward_cores(cores, xs, states, episode_starts, need_final_state=need_final_state)
        critic_out = outs[1][0].reshape(T * B, -1) if self.critic_core is not None else None
        final = None
        if need_final_state:
            final = RecurrentState(outs[0][1], outs[1][1] if self.critic_core is not None else ())  # type: ignore[arg-type]
        return outs[0][0].reshape(T * B, -1), critic_out, final

    def memory_state_after(self, seq: SequenceObs) -> RecurrentState:
        """The memory after running the chunks of ``seq`` from ``seq.state`` (the states that
        :mod:`recurrent_rl.ppo.refresh` recomputes)."""
        pi_features, vf_features = self._features(seq.obs)
        final = self._run_cores(pi_features, vf_features, seq.state, seq.episode_starts)[2]
        assert final is not None
        return final

    def _sequence_latents(self, seq: SequenceObs) -> tuple[th.Tensor, th.Tensor]:
        """Whole chunks -> (latent_pi (N, P), latent_vf (N, V)), time-major like ``seq.obs``, for
        the N = (T - burn_in) * B steps that carry a loss."""
        B = seq.episode_starts.shape[1]
        obs, state, starts, k = seq.obs, seq.state, seq.episode_starts, seq.burn_in
        if k and not seq.burn_in_gradient:
            # burn-in: the first k steps only warm the memory up (R2D2, Kapturowski et al. 2019)
            with th.no_grad():
                warm = map_obs(lambda o: o[: k * B], obs)
                state = self.memory_state_after(SequenceObs(warm, state, starts[:k]))
            obs, starts, k = map_obs(lambda o: o[k * B :], obs), starts[k:], 0
        pi_features, vf_features = self._features(obs)  # (T*B, F)
        # with burn_in_gradient, the whole window in one call, the first k steps' outputs dropped
        actor_out, critic_out, _ = self._run_cores(pi_features, vf_features, state, starts, need_final_state=False)
        if k:
            actor_out, vf_features = actor_out[k * B :], vf_features[k * B :]
            critic_out = None if critic_out is None else critic_out[k * B :]
        return self._latents(actor_out, self._critic_input(vf_features, actor_out, critic_out))  # type: ignore[return-value]

    def _step(
        self, core: MemoryCore, x: th.Tensor, state: MemoryState, episode_start: th.Tensor
    ) -> tuple[th.Tensor, MemoryState]:
        """One step of one memory core through the backend."""
        return self._backend.step_cores([core], [x], [state], episode_start)[0]

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        """The backend's action distribution (SB3's own with the torch backend)."""
        distribution = self._backend.action_distribution(self, latent_pi)
        return super()._get_action_dist_from_latent(latent_pi) if distribution is None else distribution

    def _action_distribution(self, latent_pi: th.Tensor, action_masks: th.Tensor | None) -> Distribution:
        """The action distribution; with ``action_masks`` (B, mask_size), sb3-contrib's masked one
        (see :mod:`recurrent_rl.nets.masking`)."""
        if action_masks is None:
            return self._get_action_dist_from_latent(latent_pi)
        return masked_distribution(self.action_space, self.action_net(latent_pi), action_masks)

    # --- the SB3-facing API -------------------------------------------------------------------

    def forward(  # type: ignore[override]
        self,
        obs: PyTorchObs,
        state: RecurrentState,
        episode_start: th.Tensor,
        deterministic: bool = False,
        action_masks: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, RecurrentState]:
        """One rollout step: actions, values (B, 1), log-probs (B,), next state. With
        ``action_masks`` (B, mask_size), masked actions are never sampled."""
        latent_pi, latent_vf, state = self._step_latents(obs, state, episode_start)
        distribution = self._action_distribution(latent_pi, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        return actions, self.value_net(latent_vf), log_prob, state

    def predict_values(  # type: ignore[override]
        self, obs: PyTorchObs, state: RecurrentState, episode_start: th.Tensor
    ) -> th.Tensor:
        """Values (B, 1) of one step given the memory before it."""
        pi_features, vf_features = self._features(obs)
        if self.critic_memory == "separate":
            critic_out, _ = self._step(self.critic_core, vf_features, state.critic, episode_start)  # type: ignore[arg-type]
            return self.value_net(self._latents(None, critic_out)[1])
        actor_out = None
        if self.critic_memory == "shared":
            actor_out, _ = self._step(self.actor_memory, pi_features, state.actor, episode_start)
        return self.value_net(self._latents(None, self._critic_input(vf_features, actor_out, None))[1])

    def evaluate_actions(  # type: ignore[override]
        self, obs: SequenceObs, actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probs and entropy for a minibatch of chunks (flat, time-major).

        Takes the place of SB3's per-sample ``evaluate_actions`` so that SB3's ``PPO.train``
        runs unchanged on sequences: the buffer hands it a :class:`SequenceObs` (a
        :class:`~recurrent_rl.nets.masking.MaskedSequenceObs` with masking: its masks apply).
        """
        latent_pi, latent_vf = self._sequence_latents(obs)
        distribution = self._action_distribution(latent_pi, getattr(obs, "action_masks", None))
        return self.value_net(latent_vf), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(  # type: ignore[override]
        self, obs: PyTorchObs, state: MemoryState, episode_start: th.Tensor, action_masks: th.Tensor | None = None
    ) -> tuple[Distribution, MemoryState]:
        """Action distribution of one step (masked with ``action_masks``) and the actor's next memory state."""
        pi_features, _ = self._features(obs)
        actor_out, actor_state = self._step(self.actor_memory, pi_features, state, episode_start)
        latent_pi = self._latents(actor_out, None)[0]
        return self._action_distribution(latent_pi, action_masks), actor_state  # type: ignore[arg-type]

    def _predict(  # type: ignore[override]
        self,
        observation: PyTorchObs,
        state: MemoryState,
        episode_start: th.Tensor,
        deterministic: bool = False,
        action_masks: th.Tensor | None = None,
    ) -> tuple[th.Tensor, MemoryState]:
        distribution, state = self.get_distribution(observation, state, episode_start, action_masks)
        return distribution.get_actions(deterministic=deterministic), state

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Actions for one step and the actor's next memory, as sb3-contrib's ``predict``.

        :param state: what the previous call returned (a tuple of ``(num_layers, n_envs,
            hidden_size)`` arrays: ``(h,)`` for gru/rnn, ``(h, c)`` for lstm), or None to start
            every env from a fresh memory
        :param episode_start: ``(n_envs,)`` flags; where set, that env's memory is reset first
        :param action_masks: ``(n_envs, mask_size)`` booleans, True where an action is allowed
            (sb3-contrib's MaskablePPO layout, see :mod:`recurrent_rl.nets.masking`); None: no mask
        """
        self.set_training_mode(False)
        check_finite_observations(observation, "predict()")
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        first = obs_tensor if isinstance(obs_tensor, th.Tensor) else next(iter(obs_tensor.values()))
        n_envs, device = first.shape[0], first.device
        with th.inference_mode():  # what comes out leaves as NumPy arrays
            memory = self._state_from_numpy(state, n_envs, device)
            if episode_start is None:
                starts = th.zeros(n_envs, device=device)
            else:
                starts = th.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(-1), device=device)
                if starts.numel() != n_envs:
                    raise ValueError(
                        f"episode_start has {starts.numel()} entries for {n_envs} observations; pass one flag per env"
                    )
            masks = None
            if action_masks is not None:
                rows = check_action_masks(action_masks, self.action_space, n_envs, "predict(action_masks=...)")
                masks = th.as_tensor(rows, device=device)
            action_tensor, memory = self._predict(
                obs_tensor, memory, starts, deterministic=deterministic, action_masks=masks
            )
        actions = action_tensor.cpu().numpy().reshape((-1, *(self.action_space.shape or ())))
        if isinstance(self.action_space, spaces.Box):
            if self.squash_output:
                actions = self.unscale_action(actions)
            else:
                actions = np.clip(actions, self.action_space.low, self.action_space.high)
        if not vectorized_env:
            actions = actions.squeeze(axis=0)
        return actions, state_to_numpy(memory)  # type: ignore[return-value]

    def _state_from_numpy(self, state: Any, n_envs: int, device: th.device) -> MemoryState:
        if state is None:
            return self.actor_memory.initial_state(n_envs, device)
        expected = self.actor_memory.state_shapes(n_envs)
        shapes = [np.shape(s) for s in state] if isinstance(state, (tuple, list)) else None
        if shapes != expected:
            got = shapes if shapes is not None else f"a {type(state).__name__}"
            raise ValueError(
                f"predict() got a state of shape {got}, but this {self.memory} policy with {n_envs} "
                f"observation(s) needs a tuple of {len(expected)} array(s) of shape "
                f"{expected[0] if len(set(expected)) == 1 else expected} (num_layers, n_envs, width). "
                "Pass the state returned by the previous predict() "
                "call for the same envs, or state=None to start from a fresh memory."
            )
        return tuple(th.as_tensor(s, dtype=th.float32, device=device) for s in state)


class MlpGruPolicy(RecurrentActorCriticPolicy):
    """GRU policy on flattened observations."""


class MlpLstmPolicy(RecurrentActorCriticPolicy):
    """LSTM policy on flattened observations."""

    default_memory = "lstm"


class MlpRnnPolicy(RecurrentActorCriticPolicy):
    """Elman RNN policy on flattened observations."""

    default_memory = "rnn"


class CnnGruPolicy(RecurrentActorCriticPolicy):
    """GRU policy on images (NatureCNN)."""

    default_extractor = NatureCNN


class CnnLstmPolicy(CnnGruPolicy):
    """LSTM policy on images (NatureCNN)."""

    default_memory = "lstm"


class CnnRnnPolicy(CnnGruPolicy):
    """Elman RNN policy on images (NatureCNN)."""

    default_memory = "rnn"


class MultiInputGruPolicy(RecurrentActorCriticPolicy):
    """GRU policy on Dict observations (CombinedExtractor)."""

    default_extractor = CombinedExtractor


class MultiInputLstmPolicy(MultiInputGruPolicy):
    """LSTM policy on Dict observations (CombinedExtractor)."""

    default_memory = "lstm"


class MultiInputRnnPolicy(MultiInputGruPolicy):
    """Elman RNN policy on Dict observations (CombinedExtractor)."""

    default_memory = "rnn"


POLICY_ALIASES: dict[str, type[RecurrentActorCriticPolicy]] = {
    cls.__name__: cls
    for cls in (
        MlpGruPolicy,
        MlpLstmPolicy,
        MlpRnnPolicy,
        CnnGruPolicy,
        CnnLstmPolicy,
        CnnRnnPolicy,
        MultiInputGruPolicy,
        MultiInputLstmPolicy,
        MultiInputRnnPolicy,
    )
}
