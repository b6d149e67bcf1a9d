"""RecurrentPPO: SB3's PPO with memory carried through rollouts and updates over sequence chunks.

What is recurrent lives here and in the policy and buffer; the rest is SB3's:
- ``collect_rollouts`` carries each env's memory step to step (reset where an episode starts),
  bootstraps time-limit truncations with the value computed from the memory at that step, and
  stores the memory only at chunk starts (as a copy: the rollout runs in ``inference_mode``,
  whose tensors may not enter the update's autograd graph, about 20 µs a step cheaper than
  ``no_grad`` here);
- the update is SB3's ``PPO.train`` unchanged: the buffer yields minibatches of whole chunks and
  the policy's ``evaluate_actions`` runs each chunk batch through one fused RNN call.

``learn`` runs torch on one thread by default (see :func:`recurrent_rl.threads.learn_threads`): torch's
default, one thread per core, makes the many small matrix products of a recurrent policy slower.
"""

from __future__ import annotations

import io
import pathlib
import time
import warnings
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from recurrent_rl.errors import check_finite_observations, check_spaces
from recurrent_rl.nets.devices import choose_device
from recurrent_rl.nets.memory import select_state
from recurrent_rl.nets.policies import POLICY_ALIASES, RecurrentActorCriticPolicy
from recurrent_rl.ppo.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer, plan_minibatches
from recurrent_rl.ppo.refresh import attach_refresh
from recurrent_rl.sequences import check_refresh_options
from recurrent_rl.threads import (  # noqa: F401  re-exported: their home before threads.py
    THREAD_VARIABLES,
    TorchThreads,
    check_torch_threads,
    learn_threads,
    using_torch_threads,
)
from recurrent_rl.types import RecurrentState


def rollout_collector(env: Any) -> Any:
    """The VecEnv (``env`` or one under its VecEnv wrappers) that collects whole rollouts itself,
    such as :class:`recurrent_rl.runners.RunnerVecEnv`, whose runners run this algorithm's own
    ``collect_rollouts`` in other processes; None for ordinary VecEnvs."""
    while env is not None:
        if getattr(env, "collects_rollouts", False):
            return env
        env = getattr(env, "venv", None)
    return None


class RecurrentPPO(PPO):
    """PPO with a recurrent (GRU / LSTM / Elman RNN) policy.

    Every parameter is SB3 ``PPO``'s, with the same name and meaning, plus:

    :param sequence_length: truncated-BPTT chunk length T. Each env's rollout of ``n_steps`` is
        cut into chunks of T steps; gradients flow inside a chunk and the memory entering it is
        the one recorded during the rollout. Default: ``n_steps`` (the whole rollout per env).
        Must divide ``n_steps``; ``batch_size`` must be a multiple of it and divide
        ``n_steps * n_envs``, so every minibatch holds the same number of whole chunks.
    :param torch_threads: torch's intra-op thread count during :meth:`learn`, restored afterwards.
        ``"auto"`` (default): 1 on the CPU unless you chose a count yourself
        (``torch.set_num_threads`` after importing RecurrentPPO, ``OMP_NUM_THREADS``); an integer:
        that many; None: leave torch's count alone. See :func:`learn_threads` for why one thread.
        Not saved with the model (``RecurrentPPO.load(path, torch_threads=N)`` sets it).
    :param state_refresh: recompute every chunk-start state with the current parameters before
        each epoch after the first (one pass over the rollout without gradients), instead of
        using the states of the rollout, which go stale as the update changes the network
    :param burn_in: steps of context before every chunk (from the same env: earlier in the
        rollout, or the end of the previous one) that run through the memory to warm it up and
        carry no loss; 0 to ``n_steps``. Minibatches keep ``batch_size`` steps with a loss.
    :param burn_in_gradient: let the gradient flow back through the burn-in steps (truncated BPTT
        over ``burn_in + sequence_length`` steps), so a chunk learns from observations before it;
        default False: they only warm the memory up (R2D2). See :mod:`recurrent_rl.ppo.refresh`.
    """

    policy: RecurrentActorCriticPolicy
    rollout_buffer: RecurrentRolloutBuffer
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = dict(POLICY_ALIASES)

    def __init__(
        self,
        policy: str | type[RecurrentActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 128,
        batch_size: int = 128,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        sequence_length: int | None = None,
        state_refresh: bool = False,
        burn_in: int = 0,
        burn_in_gradient: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        torch_threads: TorchThreads = "auto",
        _init_setup_model: bool = True,
    ):
        self.torch_threads = check_torch_threads(torch_threads)
        # "auto" is this package's rule, not SB3's "CUDA when present" (recurrent_rl.nets.devices):
        # chosen here when the env is known, again in _setup_model (loading builds without an env)
        self.auto_device = isinstance(device, str) and device == "auto"
        if isinstance(policy, str) and policy not in self.policy_aliases:
            raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(self.policy_aliases)}")
        if env is not None:
            env = maybe_make_env(env, verbose)
            check_spaces(env.observation_space, env.action_space, "RecurrentPPO")
            if self.auto_device:
                device = choose_device(env.observation_space, policy_kwargs).device
        self.sequence_length = sequence_length or n_steps
        self.state_refresh, self.burn_in, self.burn_in_gradient = check_refresh_options(
            state_refresh, burn_in, burn_in_gradient, n_steps
        )
        if env is not None and _init_setup_model:
            n_envs = env.num_envs if isinstance(env, VecEnv) else 1
            self.sequence_length, notes = plan_minibatches(n_steps, n_envs, batch_size, sequence_length)
            for note in notes:
                warnings.warn(note, UserWarning, stacklevel=2)
        with warnings.catch_warnings():
            # SB3's PPO warns about a truncated last minibatch in its own terms (steps, not
            # chunks); plan_minibatches said it above in this buffer's terms
            warnings.filterwarnings("ignore", message="You have specified a mini-batch size", category=UserWarning)
            super().__init__(
                policy,
                env,
                learning_rate=learning_rate,
                n_steps=n_steps,
                batch_size=batch_size,
                n_epochs=n_epochs,
                gamma=gamma,
                gae_lambda=gae_lambda,
                clip_range=clip_range,
                clip_range_vf=clip_range_vf,
                normalize_advantage=normalize_advantage,
                ent_coef=ent_coef,
                vf_coef=vf_coef,
                max_grad_norm=max_grad_norm,
                use_sde=use_sde,
                sde_sample_freq=sde_sample_freq,
                target_kl=target_kl,
                stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log,
                policy_kwargs=policy_kwargs,
                verbose=verbose,
                seed=seed,
                device=device,
                _init_setup_model=False,
            )
        if _init_setup_model:
            self._setup_model()

    # (Box/Discrete/... observations, Dict observations)
    buffer_classes: ClassVar[tuple[type[RecurrentRolloutBuffer], type[RecurrentDictRolloutBuffer]]] = (
        RecurrentRolloutBuffer,
        RecurrentDictRolloutBuffer,
    )

    def _setup_model(self) -> None:
        dict_obs = isinstance(self.observation_space, spaces.Dict)
        self.rollout_buffer_class = self.buffer_classes[1] if dict_obs else self.buffer_classes[0]
        refresh = check_refresh_options(self.state_refresh, self.burn_in, self.burn_in_gradient, self.n_steps)
        self.rollout_buffer_kwargs = {
            "sequence_length": self.sequence_length,
            "burn_in": refresh[1],
            "burn_in_gradient": refresh[2],
        }
        if getattr(self, "auto_device", False):  # a model loaded with device="auto"
            self.device = choose_device(self.observation_space, self.policy_kwargs).device
        super()._setup_model()  # PPO's: lr and clip schedules, buffer, policy
        if not isinstance(self.policy, RecurrentActorCriticPolicy):
            raise ValueError(
                f"RecurrentPPO needs a RecurrentActorCriticPolicy (or subclass), got {type(self.policy).__name__}"
            )
        attach_refresh(self.rollout_buffer, self.policy if refresh[0] else None)
        self._last_state: RecurrentState = self.policy.initial_state(self.n_envs)

    def _maybe_recommend_cpu(self, mlp_class_name: str = "ActorCriticPolicy") -> None:
        # SB3's warning for its MLP PPO, for the policies that "auto" keeps on the CPU
        if self.device.type != "cuda" or self.auto_device:
            return
        if choose_device(self.observation_space, self.policy_kwargs, cuda=True).device.type == "cpu":
            warnings.warn(
                f"RecurrentPPO trains on {self.device}, but for vector observations and small memories the "
                "CPU (with its speed backend) is faster: device='auto' picks it (recurrent_rl.nets.devices). "
                "The model will train, with poor GPU use.",
                UserWarning,
                stacklevel=2,
            )

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        reset_env = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if reset_env or not hasattr(self, "_last_state"):
            self._last_state = self.policy.initial_state(self.n_envs)
        return result

    def collect_rollouts(  # type: ignore[override]  # always this algorithm's own recurrent buffer
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RecurrentRolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's ``collect_rollouts`` with the memory carried (and reset) from step to step.

        ``self.rollout_state`` is public: the policy's memory state (a
        :class:`~recurrent_rl.types.RecurrentState`) after the current step, set before each
        ``callback.on_step()``. Callbacks read it there rather than the rollout's local variables
        through SB3's ``self.locals`` (the ``memory/`` TensorBoard tags come from it). It is the
        policy's own tensors, not a copy: read them, do not change them in place.
        """
        started = time.perf_counter()
        collector = rollout_collector(env)
        if collector is not None:  # envs in other processes (Ray runners) that run this loop themselves
            self.policy.set_training_mode(False)
            collected = collector.collect_rollouts(self, callback, rollout_buffer, n_rollout_steps)
        else:
            collected = self._collect_here(env, callback, rollout_buffer, n_rollout_steps)
        self.logger.record("time/collect_s", time.perf_counter() - started)
        return collected

    def _collect_here(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RecurrentRolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """The collection loop itself (what every runner runs too; see :meth:`collect_rollouts`)."""
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        state = self._last_state
        for n_steps in range(n_rollout_steps):
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            if rollout_buffer.wants_state(n_steps):  # a chunk (or its burn-in) starts here
                rollout_buffer.add_chunk_start_state(state)

            check_finite_observations(self._last_obs, "RecurrentPPO rollout")
            masks = self._rollout_action_masks(env)  # None unless the algorithm masks actions
            with th.inference_mode():  # no_grad's cheaper sibling: nothing here is ever differentiated
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                starts = th.as_tensor(self._last_episode_starts, dtype=th.float32, device=self.device)
                # a policy subclass that overrides forward without action_masks still runs unmasked
                extra = {} if masks is None else {"action_masks": th.as_tensor(masks, device=self.device)}
                actions, values, log_probs, state = self.policy(obs_tensor, state, starts, **extra)
            actions = actions.cpu().numpy()

            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs

            self.rollout_state = state  # for the callbacks (see the docstring); no copy
            callback.update_locals(locals())
            if not callback.on_step():
                self._last_state = state
                return False

            self._update_info_buffer(infos, dones)
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            # Time-limit truncation: bootstrap with the value of the terminal observation, computed
            # from the memory *after* this step (the episode goes on in the critic's eyes).
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated")
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.inference_mode():
                        terminal_value = self.policy.predict_values(
                            terminal_obs, select_state(state, idx), th.zeros(1, device=self.device)
                        )[0]
                    rewards[idx] += self.gamma * terminal_value.item()

            stored = {} if masks is None else {"action_masks": masks}
            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs, **stored)  # type: ignore[arg-type]
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        self._last_state = state
        with th.inference_mode():
            starts = th.as_tensor(dones, dtype=th.float32, device=self.device)
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), state, starts)  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def train(self) -> None:
        """SB3's PPO update, unchanged; its wall time is logged as ``time/update_s``."""
        started = time.perf_counter()
        super().train()
        self.logger.record("time/update_s", time.perf_counter() - started)

    def _rollout_action_masks(self, env: VecEnv) -> np.ndarray | None:
        """The action masks of the current step, (n_envs, mask_size) bool; None: no masking (here)."""
        return None

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "RecurrentPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> RecurrentPPO:
        """SB3's ``learn``, with torch on the thread count that ``torch_threads`` chooses (one thread
        on the CPU by default; the previous count is restored afterwards). TensorBoard runs are
        named ``RecurrentPPO_<n>`` by default."""
        threads = learn_threads(getattr(self, "torch_threads", "auto"), self.device)
        with using_torch_threads(threads):
            return super().learn(
                total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar
            )

    @classmethod
    def load(
        cls,
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> RecurrentPPO:
        """SB3's ``load``; a zip saved by sb3-contrib's ``RecurrentPPO`` is converted first (its
        LSTM weights mapped into this package's LSTM policy, see :mod:`recurrent_rl.ppo.contrib`).
        A pickle-based zip, like SB3's: load only files you trust."""
        from recurrent_rl.ppo.contrib import convert_contrib_zip

        converted = convert_contrib_zip(path, custom_objects)
        source = path if converted is None else converted
        if isinstance(device, str) and device == "auto":  # this package's rule, not SB3's, before tensors load
            device = _auto_device_of_zip(source, custom_objects)
        return super().load(source, env, device, custom_objects, print_system_info, force_reset, **kwargs)

    @classmethod
    def load_safe(
        cls, path: str | pathlib.Path, env: GymEnv | None = None, device: th.device | str = "auto", **kwargs: Any
    ) -> RecurrentPPO:
        """Rebuild a model from its weights-only copy (``model.safetensors`` + ``model.json``, written
        beside every zip of a run folder, or by :func:`recurrent_rl.save_safe`) without unpickling
        anything: safe for files from strangers. ``kwargs``: ``custom_classes``, ``optimizer``
        (see :func:`recurrent_rl.ppo.persistence.load_safe_model`)."""
        from recurrent_rl.ppo.persistence import load_safe_model

        return load_safe_model(cls, path, env=env, device=device, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        # torch_threads and how the device was chosen are this machine's, not part of the model
        return [*super()._excluded_save_params(), "_last_state", "rollout_state", "torch_threads", "auto_device"]


def _auto_device_of_zip(source: Any, custom_objects: dict[str, Any] | None) -> th.device:
    """What ``device="auto"`` picks for the model a zip holds (its spaces and policy options)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(source, load_data=True, custom_objects=custom_objects, device="cpu")
    if isinstance(source, io.BufferedIOBase):
        source.seek(0)
    data = data or {}
    return choose_device(data.get("observation_space"), data.get("policy_kwargs")).device
