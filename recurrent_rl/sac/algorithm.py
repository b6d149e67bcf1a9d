"""RecurrentSAC: SB3's SAC with memories, trained on windows of episodes from a sequence replay buffer.

What is recurrent lives here, in the policy and in the buffer; the rest is SB3's
(``OffPolicyAlgorithm``: ``train_freq``, ``gradient_steps``, ``learning_starts``, the logger,
callbacks, save/load, ``save_replay_buffer``; ``SAC``: entropy tuning, the target network, the
saved optimizers):

- collection (``_sample_action``) steps the actor's memory, and the critic's when states are
  stored, with each env's previous action and reward, resetting at episode starts; the
  transition goes to the buffer with its episode start and the states entering the step;
- the update (``train``) draws windows (:mod:`recurrent_rl.sac.buffers`), runs each memory once
  over L + 1 rows (burn-in without gradient), and computes SAC's losses on the rows the mask keeps.

Shapes: T rows after the burn-in (L - B), W windows, A action size.
"""

from __future__ import annotations

import io
import pathlib
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.common.vec_env import VecEnv

from recurrent_rl.errors import UserInputError, check_finite_observations
from recurrent_rl.nets.memory import state_to_numpy
from recurrent_rl.sac.buffers import SequenceReplayBuffer, SequenceReplaySamples, StepExtras, check_sequence_options
from recurrent_rl.sac.policies import RecurrentSACPolicy, check_policy_options, reset_columns, stored_state_shapes
from recurrent_rl.threads import TorchThreads, check_torch_threads, learn_threads, using_torch_threads
from recurrent_rl.types import MemoryState, RecurrentState

# RecurrentSAC's own options that are the policy's (forwarded through policy_kwargs)
POLICY_OPTIONS = ("memory", "hidden_size", "num_layers", "critic_memory", "prev_action", "prev_reward")


def masked_mean(x: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Mean of ``x`` over the rows where ``mask`` is 1; the other rows add exactly zero (value and gradient)."""
    return th.where(mask > 0, x, th.zeros_like(x)).sum() / mask.sum().clamp(min=1.0)


class RecurrentSAC(SAC):
    """Soft actor-critic with memory (GRU, LSTM, ... any ``MemoryCore``) in the actor and the critics.

    Every parameter is SB3 ``SAC``'s, with the same name and meaning, plus:

    :param memory: the memory type: ``gru``, ``lstm``, ``rnn``, ``mingru``, ``minlstm``, ``transformer``
    :param hidden_size: units per memory layer
    :param num_layers: stacked memory layers
    :param critic_memory: ``"separate"`` (default: the critic and its target own a memory each,
        apart from the actor's) or ``"shared"`` (one memory, trained by the critic loss)
    :param prev_action: the memories also read the previous action (zeros at an episode start)
    :param prev_reward: the memories also read the previous reward (``predict`` then needs ``reward=``)
    :param sequence_length: rows per sampled window (L), burn-in included; it should cover the
        history the task needs. Must be smaller than ``buffer_size // n_envs``
    :param burn_in: leading rows of each window that only warm the memories, without loss or
        gradient (B < L; R2D2's burn-in)
    :param stored_states: start each window from the memory states stored when its first step
        was collected (R2D2); False (default): from zero states, the burn-in warming them
    :param torch_threads: as :class:`~recurrent_rl.ppo.algorithm.RecurrentPPO` (one thread on the
        CPU by default during ``learn``); not saved with the model
    ``batch_size`` counts windows (each of up to L - B trained rows). gSDE,
    ``optimize_memory_usage`` and ``n_steps > 1`` are not supported; actions must be a ``Box``.
    """

    policy: RecurrentSACPolicy  # type: ignore[assignment]
    replay_buffer: SequenceReplayBuffer
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": RecurrentSACPolicy}

    def __init__(
        self,
        policy: str | type[RecurrentSACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 1000,
        batch_size: int = 32,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        memory: str = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        critic_memory: str = "separate",
        prev_action: bool = True,
        prev_reward: bool = False,
        sequence_length: int = 32,
        burn_in: int = 0,
        stored_states: bool = False,
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
        if isinstance(policy, str) and policy not in self.policy_aliases:
            raise UserInputError(
                f"unknown policy {policy!r} for RecurrentSAC; choose one of {sorted(self.policy_aliases)}"
            )
        policy_kwargs = dict(policy_kwargs or {})
        given = dict(
            memory=memory,
            hidden_size=hidden_size,
            num_layers=num_layers,
            critic_memory=critic_memory,
            prev_action=prev_action,
            prev_reward=prev_reward,
        )
        for name, value in given.items():
            policy_kwargs.setdefault(name, value)
        if _init_setup_model:
            # bad input is refused here, before an env is stepped or a network built
            if env is not None:
                env = maybe_make_env(env, verbose)
                check_sac_spaces(env.observation_space, env.action_space)
            check_policy_options(
                policy_kwargs["memory"],
                policy_kwargs["hidden_size"],
                policy_kwargs["num_layers"],
                policy_kwargs["critic_memory"],
                use_sde,
            )
            if optimize_memory_usage or n_steps != 1:
                raise UserInputError("RecurrentSAC supports neither optimize_memory_usage=True nor n_steps > 1")
            n_envs = env.num_envs if isinstance(env, VecEnv) else 1
            check_sequence_options(sequence_length, burn_in, max(int(buffer_size) // n_envs, 1))
            if replay_buffer_class is not None and not issubclass(replay_buffer_class, SequenceReplayBuffer):
                raise UserInputError(
                    f"RecurrentSAC samples windows of episodes: replay_buffer_class must be a SequenceReplayBuffer, "
                    f"got {replay_buffer_class.__name__}"
                )
        self.sequence_length = sequence_length
        self.burn_in = burn_in
        self.stored_states = bool(stored_states)
        super().__init__(
            policy,  # type: ignore[arg-type]
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class or SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
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

    def _setup_model(self) -> None:
        kwargs = self.policy_kwargs
        shapes: list[tuple[int, int]] = []
        if self.stored_states:
            shapes = stored_state_shapes(
                kwargs["memory"],
                kwargs["hidden_size"],
                kwargs["num_layers"],
                kwargs.get("memory_kwargs"),
                kwargs["critic_memory"],
            )
        self.replay_buffer_kwargs = {
            **self.replay_buffer_kwargs,
            "sequence_length": self.sequence_length,
            "burn_in": self.burn_in,
            "state_shapes": shapes,
        }
        super()._setup_model()  # SAC's: buffer, policy, entropy coefficient, aliases
        self._reset_memory()

    def _reset_memory(self) -> None:
        """Fresh memory and zero previous action and reward for every env (a new episode everywhere)."""
        n_envs = self.n_envs
        self._last_state: RecurrentState = self.policy.initial_state(n_envs)
        self._last_prev_action = np.zeros((n_envs, self.policy.action_dim), dtype=np.float32)
        self._last_prev_reward = np.zeros(n_envs, dtype=np.float32)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ):
        reset_env = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if reset_env or not hasattr(self, "_last_state"):
            self._reset_memory()  # SB3 reset the envs: every episode starts anew
        return result

    # --- collection -----------------------------------------------------------------------------

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's ``_sample_action`` with the memory stepped (also during the random warm-up, so
        the stored states and the memory are right when learning starts)."""
        assert self._last_obs is not None, "No previous observation was provided"
        check_finite_observations(self._last_obs, "RecurrentSAC collection")
        policy = self.policy
        device = self.device
        starts = th.as_tensor(np.asarray(self._last_episode_starts, dtype=np.float32), device=device)
        keep = (1.0 - starts).unsqueeze(-1)
        prev_a = th.as_tensor(self._last_prev_action, device=device) * keep if policy.prev_action else None
        prev_r = th.as_tensor(self._last_prev_reward, device=device) * keep[:, 0] if policy.prev_reward else None
        actor_state, critic_state = self._last_state
        with th.no_grad():
            obs = policy.obs_to_tensor(self._last_obs)[0]
            entering: tuple[MemoryState, ...] = (reset_columns(actor_state, starts),)
            actions, actor_state = policy.actor.step(obs, actor_state, starts, prev_a, prev_r, deterministic=False)
            if self.stored_states and policy.critic_has_memory:
                entering += (reset_columns(critic_state, starts),)
                _, critic_state = policy.critic.encoder.step(obs, critic_state, starts, prev_a, prev_r)
        self._last_state = RecurrentState(actor_state, critic_state)
        # for callbacks, as RecurrentPPO.rollout_state (the memory/ norms of the runs' callback)
        self.rollout_state = self._last_state
        stored = tuple(leaf for state in entering for leaf in state_to_numpy(state)) if self.stored_states else ()
        self._step_extras = StepExtras(np.asarray(self._last_episode_starts, dtype=bool), stored)

        if self.num_timesteps < learning_starts:
            scaled_action = policy.scale_action(np.array([self.action_space.sample() for _ in range(n_envs)]))
        else:
            scaled_action = actions.cpu().numpy()
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return policy.unscale_action(scaled_action), scaled_action.astype(np.float32)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's ``_store_transition``, with the step's episode start and stored states handed to the
        buffer first; then the previous action and reward each env's memory reads next."""
        if isinstance(replay_buffer, SequenceReplayBuffer):
            replay_buffer.stage(self._step_extras)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._last_prev_action = np.asarray(buffer_action, dtype=np.float32).reshape(self.n_envs, -1)
        self._last_prev_reward = np.asarray(reward, dtype=np.float32).reshape(self.n_envs)
        self._last_episode_starts = np.asarray(dones, dtype=bool)

    # --- the update -----------------------------------------------------------------------------

    def _memory_inputs(self, data: SequenceReplaySamples) -> dict[str, Any]:
        policy = self.policy
        return dict(
            obs=data.observations,
            episode_starts=data.episode_starts,
            prev_actions=data.prev_actions if policy.prev_action else None,
            prev_rewards=data.prev_rewards if policy.prev_reward else None,
            burn_in=self.burn_in,
        )

    def _start_states(self, data: SequenceReplaySamples, n_windows: int) -> tuple[MemoryState, MemoryState]:
        """The states entering each window's first row: stored (actor's, critic's) or zeros."""
        actor, critic = self.policy.initial_state(n_windows)
        if not self.stored_states:
            return actor, critic
        n = len(actor)
        stored_actor = tuple(data.states[:n])
        stored_critic = tuple(data.states[n:]) if self.policy.critic_has_memory else ()
        return stored_actor, stored_critic

    def memory_outputs(self, data: SequenceReplaySamples) -> dict[str, th.Tensor]:
        """The memories over the windows: ``actor``, ``critic`` (with gradient) and ``target`` (without),
        each (T + 1, W, H) for the rows after the burn-in and the next-observation row."""
        policy = self.policy
        inputs = self._memory_inputs(data)
        actor_start, critic_start = self._start_states(data, data.mask.shape[1])
        if not policy.critic_has_memory:
            critic_start = actor_start  # one memory: the stored state is the shared one
        actor_out = policy.actor.encoder.sequence(state=actor_start, **inputs)
        critic_out = (
            actor_out if not policy.critic_has_memory else policy.critic.encoder.sequence(state=critic_start, **inputs)
        )
        with th.no_grad():
            target_out = policy.critic_target.encoder.sequence(state=critic_start, **inputs)
        return {"actor": actor_out, "critic": critic_out, "target": target_out}

    def critic_loss(
        self,
        data: SequenceReplaySamples,
        outs: dict[str, th.Tensor],
        actions_pi: th.Tensor,
        log_prob: th.Tensor,
        ent_coef: th.Tensor,
    ) -> tuple[th.Tensor, th.Tensor]:
        """SAC's critic loss over the trained rows, and the first Q head's values (T, W).

        The TD target of row t bootstraps from the target critic's memory at row t + 1 (the next
        observation) with the actor's action and log-probability there; a termination stops it,
        a time-limit truncation does not (SB3's ``handle_timeout_termination``).
        """
        B, mask = self.burn_in, data.mask[self.burn_in :]
        critic, critic_target = self.policy.critic, self.policy.critic_target
        with th.no_grad():
            next_q = th.stack(critic_target.q_values(outs["target"][1:], actions_pi[1:]), dim=0).min(dim=0).values
            next_q = next_q - ent_coef * log_prob[1:]
            target_q = data.rewards[B:] + (1 - data.dones[B:]) * self.gamma * next_q  # (T, W)
        current_q = critic.q_values(outs["critic"][:-1], data.actions[B:])
        loss = 0.5 * sum(masked_mean((q - target_q) ** 2, mask) for q in current_q)
        return loss, current_q[0]  # type: ignore[return-value]

    def actor_loss(
        self,
        data: SequenceReplaySamples,
        outs: dict[str, th.Tensor],
        actions_pi: th.Tensor,
        log_prob: th.Tensor,
        ent_coef: th.Tensor,
    ) -> th.Tensor:
        """SAC's actor loss over the trained rows. The critic reads its memory's output detached
        (computed before the critic's step, its Q heads after it): the loss trains the actor only."""
        mask = data.mask[self.burn_in :]
        q_pi = self.policy.critic.q_values(outs["critic"][:-1].detach(), actions_pi[:-1])
        min_q_pi = th.stack(q_pi, dim=0).min(dim=0).values
        return masked_mean(ent_coef * log_prob[:-1] - min_q_pi, mask)

    def train(self, gradient_steps: int, batch_size: int = 32) -> None:
        """SAC's update (SB3's ``SAC.train``, step for step) on windows: every loss is a mean over the
        rows the buffer's mask keeps, and the memories run over whole windows."""
        self.policy.set_training_mode(True)
        actor, critic = self.policy.actor, self.policy.critic
        optimizers = [actor.optimizer, critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        logs: dict[str, list[float]] = {
            key: [] for key in ("ent_coef", "ent_coef_loss", "actor_loss", "critic_loss", "q_values", "entropy")
        }
        norms: dict[str, list[float]] = {"actor": [], "critic": []}
        B = self.burn_in
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            mask = data.mask[B:]  # (T, W) the trained rows
            outs = self.memory_outputs(data)
            # actions and log-probs at every row (T + 1): rows [:-1] for the losses, rows [1:] for the targets
            actions_pi, log_prob = actor.action_log_prob(outs["actor"])

            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = -masked_mean(self.log_ent_coef * (log_prob[:-1] + self.target_entropy).detach(), mask)
                logs["ent_coef_loss"].append(ent_coef_loss.item())
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
            else:
                ent_coef = self.ent_coef_tensor
            logs["ent_coef"].append(ent_coef.item())

            critic_loss, current_q = self.critic_loss(data, outs, actions_pi, log_prob, ent_coef)
            logs["critic_loss"].append(critic_loss.item())
            logs["q_values"].append(masked_mean(current_q.detach(), mask).item())
            critic.optimizer.zero_grad()
            critic_loss.backward()
            critic.optimizer.step()

            actor_loss = self.actor_loss(data, outs, actions_pi, log_prob, ent_coef)
            logs["actor_loss"].append(actor_loss.item())
            logs["entropy"].append(-masked_mean(log_prob[:-1].detach(), mask).item())
            actor.optimizer.zero_grad()
            actor_loss.backward()
            actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(critic.parameters(), self.policy.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
            norms["actor"].append(_row_norm(outs["actor"][:-1], mask))
            if self.policy.critic_has_memory:
                norms["critic"].append(_row_norm(outs["critic"][:-1], mask))

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in logs.items():
            if values:
                self.logger.record(f"train/{key}", float(np.mean(values)))
        for key, values in norms.items():
            if values:
                self.logger.record(f"memory/{key}_output_norm", float(np.mean(values)))

    # --- the SB3-facing API ---------------------------------------------------------------------

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        reward: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Actions and the next state, as ``RecurrentPPO.predict`` (see :meth:`RecurrentSACPolicy.predict`)."""
        return self.policy.predict(observation, state, episode_start, deterministic, reward)

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "RecurrentSAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> RecurrentSAC:
        """SB3's ``learn``, with torch on the thread count that ``torch_threads`` chooses."""
        threads = learn_threads(getattr(self, "torch_threads", "auto"), self.device)
        with using_torch_threads(threads):
            return super().learn(
                total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar
            )

    @classmethod
    def load_safe(
        cls, path: str | pathlib.Path, env: GymEnv | None = None, device: th.device | str = "auto", **kwargs: Any
    ) -> RecurrentSAC:
        """Rebuild a model from its weights-only copy (``model.safetensors`` + ``model.json``, written
        beside every zip of a run folder, or by :func:`recurrent_rl.save_safe`) without unpickling
        anything; ``kwargs``: ``custom_classes``, ``optimizer`` (see
        :func:`recurrent_rl.sac.persistence.load_safe_sac`). The replay buffer starts empty:
        :meth:`load_replay_arrays` fills it."""
        from recurrent_rl.sac.persistence import load_safe_sac

        return load_safe_sac(cls, path, env=env, device=device, **kwargs)

    def save_replay_arrays(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the replay buffer's stored steps as plain arrays (``.npz``, no pickle); see
        :mod:`recurrent_rl.sac.persistence`."""
        from recurrent_rl.sac.persistence import save_replay_arrays

        return save_replay_arrays(self.replay_buffer, path)

    def load_replay_arrays(self, path: str | pathlib.Path) -> None:
        """Fill the replay buffer from :meth:`save_replay_arrays`'s file, every array checked against
        this model's buffer first."""
        from recurrent_rl.sac.persistence import load_replay_arrays

        load_replay_arrays(self.replay_buffer, path)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer`` (a pickle: load only files you trust), refusing a buffer that
        does not match this model's windows or stored states."""
        super().load_replay_buffer(path, truncate_last_traj)
        buffer = self.replay_buffer
        if not isinstance(buffer, SequenceReplayBuffer):
            raise UserInputError(
                f"{path} holds a {type(buffer).__name__}, not a SequenceReplayBuffer from RecurrentSAC"
            )
        expected = self.replay_buffer_kwargs.get("state_shapes", [])
        if (buffer.sequence_length, buffer.burn_in, buffer.state_shapes) != (
            self.sequence_length,
            self.burn_in,
            [tuple(s) for s in expected],
        ):
            raise UserInputError(
                f"{path} was saved with sequence_length={buffer.sequence_length}, burn_in={buffer.burn_in} and stored "
                f"states {buffer.state_shapes}, but this model uses {self.sequence_length}, {self.burn_in} and "
                f"{expected}"
            )

    def _excluded_save_params(self) -> list[str]:
        # memory carried between steps and this machine's thread count are not part of the model
        return [
            *super()._excluded_save_params(),
            "_last_state",
            "rollout_state",
            "_step_extras",
            "_last_prev_action",
            "_last_prev_reward",
            "torch_threads",
        ]


def check_sac_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """RecurrentSAC acts in ``Box`` spaces only (SAC's squashed Gaussian), on non-Dict observations."""
    if isinstance(observation_space, spaces.Dict):
        raise UserInputError(
            "RecurrentSAC does not support Dict observations yet: flatten them with "
            "gymnasium.wrappers.FlattenObservation"
        )
    if not isinstance(action_space, spaces.Box):
        raise UserInputError(
            f"RecurrentSAC needs a continuous (Box) action space, got {action_space}: use RecurrentPPO for "
            "discrete actions"
        )


def _row_norm(out: th.Tensor, mask: th.Tensor) -> float:
    """Mean L2 norm of a memory's output over the trained rows."""
    return masked_mean(out.detach().norm(dim=-1), mask).item()
