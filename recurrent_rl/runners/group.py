"""The learner's side: N Ray actors running :class:`~recurrent_rl.runners.runner.RolloutRunner`, behind a VecEnv.

:class:`RunnerVecEnv` is a VecEnv of N*K envs whose envs live in N runners (Ray actors, K envs
each). Give it to :class:`~recurrent_rl.RecurrentPPO` as the env (inside a ``VecNormalize`` to
normalise); the algorithm's ``collect_rollouts`` sees that the env collects whole rollouts
itself and hands the iteration to :meth:`RunnerVecEnv.collect_rollouts`, which

1. publishes the current weights (and the normalisation statistics) once through Ray's object
   store;
2. has every runner collect ``n_steps`` per env with the same loop as the in-process path (each
   runner is that loop in another process) and return its columns of the rollout buffer;
3. assembles one rollout buffer of N*K envs (the runners computed GAE over their own envs, which
   is GAE over all envs), merges the runners' batch moments into the learner's statistics, and
   replays the steps to the callbacks (step counter, episode infos), so SB3's PPO update,
   logging, checkpoints and evaluations run unchanged.

Collection is synchronous: every sample comes from the current policy.

Faults: a runner whose process dies (or whose node disappears), or whose env raises, is replaced
by a new actor: its envs are made again and reset with fresh seeds, its memory starts fresh, and
its share of the iteration is collected again. The event is printed as one line and counted
(TensorBoard ``runners/restarts``). A runner slot that fails ``max_restarts`` times in a row
stops the run with a :class:`RunnerError` naming the env and the exception.

Seeds: env ``j`` of runner ``i`` is reset with ``seed + i*K + j`` (the same seeds as ``N*K``
envs in one process) and runner ``i``'s copy of the policy samples actions from torch's generator
seeded ``seed + i*K``; the ``r``-th replacement of runner ``i`` uses ``seed + i*K + r*REPLACEMENT_SEED``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.memory import cat_states, map_state
from recurrent_rl.runners import moments
from recurrent_rl.runners.runner import BUFFER_ARRAYS, RolloutPiece, RolloutRunner, RunnerSpec
from recurrent_rl.runners.subproc import EnvProcessError

REPLACEMENT_SEED = 1_000_003  # a replacement runner's envs and sampler start here past the original's


class RunnerError(EnvProcessError):
    """A runner slot kept failing (an env that always raises): the run stops; its last checkpoint stays."""


def env_name(env_fn: Callable[[], Any]) -> str:
    """How messages name the env a factory makes (its ``env_id`` attribute, else its repr)."""
    return str(getattr(env_fn, "env_id", None) or getattr(env_fn, "__name__", None) or repr(env_fn))


class RunnerVecEnv(VecEnv):
    """N*K envs in N Ray actors; see the module docstring.

    :param env_fn: makes one env; must pickle (Ray sends it to every runner): a module-level
        function, an env factory object, or a lambda (cloudpickle)
    :param count: N runners
    :param envs_per_runner: K envs in each
    :param address: the Ray cluster: ``local`` (a runtime started on this machine, declaring
        ``max(count * cpus_per_runner, CPUs)`` CPUs, so runners of a latency-bound env may
        outnumber the cores), ``auto`` or ``HOST:PORT``
    :param cpus_per_runner: the CPUs each actor asks Ray for
    :param max_restarts: consecutive failures of one runner slot before the run stops
    """

    collects_rollouts = True  # RecurrentPPO.collect_rollouts hands the iteration to collect_rollouts

    def __init__(
        self,
        env_fn: Callable[[], Any],
        count: int,
        envs_per_runner: int = 1,
        address: str = "local",
        cpus_per_runner: float = 1.0,
        max_restarts: int = 3,
    ):
        from recurrent_rl.cluster import connect, default_workers, require_ray

        for name, value in (("count", count), ("envs_per_runner", envs_per_runner)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserInputError(f"runners: {name} must be a positive integer, got {value!r}")
        self.env_fn, self.count, self.envs_per_runner = env_fn, count, envs_per_runner
        self.max_restarts, self.cpus_per_runner = max_restarts, cpus_per_runner
        self.name = env_name(env_fn)
        local = address in (None, "local")
        self._started_ray = not require_ray("runners").is_initialized()
        declared = max(int(np.ceil(count * cpus_per_runner)), default_workers()) if local else None
        self.ray = connect(address, num_cpus=declared, what="runners")
        self._actor_class = self.ray.remote(num_cpus=cpus_per_runner, max_restarts=0, max_task_retries=0)(RolloutRunner)
        self.seed_base: int | None = None
        self.replacements = [0] * count
        self.restarts = 0
        self.actors: list[Any] = [self._start(i, generation=0) for i in range(count)]
        found = self.ray.get([actor.spaces.remote() for actor in self.actors])
        observation_space, action_space = found[0]
        for index, (obs_space, act_space) in enumerate(found[1:], start=1):
            if obs_space != observation_space or act_space != action_space:
                self.close()
                raise UserInputError(
                    f"runners: runner {index}'s envs have observations {obs_space} and actions {act_space}, runner "
                    f"0's {observation_space} and {action_space}: every runner must make the same env"
                )
        super().__init__(count * envs_per_runner, observation_space, action_space)
        self.spec: RunnerSpec | None = None

    # --- actors ----------------------------------------------------------------------------------

    def _seed(self, index: int, generation: int) -> int | None:
        if self.seed_base is None:
            return None
        return self.seed_base + index * self.envs_per_runner + generation * REPLACEMENT_SEED

    def _start(self, index: int, generation: int) -> Any:
        return self._actor_class.remote(self.env_fn, self.envs_per_runner, self._seed(index, generation))

    def _columns(self, index: int) -> slice:
        return slice(index * self.envs_per_runner, (index + 1) * self.envs_per_runner)

    def _replace(self, index: int, error: BaseException) -> None:
        """Start a new actor for slot ``index`` (fresh envs, seeds and memory), ready to collect."""
        old = self.actors[index]
        try:
            self.ray.kill(old)
        except Exception:  # already dead
            pass
        self.replacements[index] += 1
        self.restarts += 1
        generation = self.replacements[index]
        print(
            f"runner {index}: {_describe(error)}; replaced (restart {self.restarts}), its envs reset with fresh seeds "
            "and its share of this iteration collected again",
            file=sys.stderr,
            flush=True,
        )
        actor = self._start(index, generation)
        seed = self._seed(index, generation)
        assert self.spec is not None
        self.ray.get([actor.build.remote(self.spec, seed), actor.reset.remote(seed)])
        self.actors[index] = actor

    # --- what RecurrentPPO's collect_rollouts hands over -------------------------------------------

    def collect_rollouts(self, model: Any, callback: BaseCallback, rollout_buffer: Any, n_rollout_steps: int) -> bool:
        """One synchronous iteration over all runners; see the module docstring. False when a callback stops."""
        if self.spec is None:
            self._build(model)
        normalizer = model.get_vec_normalize_env()
        obs_rms = moments.copy_moments(normalizer.obs_rms) if normalizer is not None and normalizer.norm_obs else None
        ret_rms = normalizer.ret_rms.copy() if normalizer is not None else None
        weights = {name: tensor.detach().cpu() for name, tensor in model.policy.state_dict().items()}
        published = (self.ray.put(weights), obs_rms, ret_rms)
        callback.on_rollout_start()
        pieces = self._gather(published, n_rollout_steps)
        self._assemble(model, rollout_buffer, pieces)
        if normalizer is not None:
            for piece in pieces:
                if obs_rms is not None:
                    moments.merge(normalizer.obs_rms, piece.obs_moments)
                moments.merge(normalizer.ret_rms, piece.ret_moments)
        model.logger.record("runners/restarts", self.restarts)
        for index, piece in enumerate(pieces):
            rate = n_rollout_steps * self.envs_per_runner / max(piece.seconds, 1e-9)
            model.logger.record(f"runners/steps_per_s/{index}", rate)
        return self._replay(model, callback, pieces, n_rollout_steps)

    def _build(self, model: Any) -> None:
        self.spec = runner_spec(model)
        seeds = [self._seed(i, self.replacements[i]) for i in range(self.count)]
        builds = [actor.build.remote(self.spec, seed) for actor, seed in zip(self.actors, seeds)]
        for index, build in enumerate(builds):
            try:
                self.ray.get(build)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as error:
                self._replace(index, error)

    def _gather(self, published: tuple[Any, Any, Any], n_steps: int) -> list[RolloutPiece]:
        failures = [0] * self.count
        pending = {self.actors[i].collect.remote(*published, n_steps): i for i in range(self.count)}
        pieces: dict[int, RolloutPiece] = {}
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                pieces[index] = self.ray.get(ready[0])
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as error:
                failures[index] += 1
                if failures[index] > self.max_restarts:
                    for future in pending:
                        self.ray.cancel(future, force=True)
                    raise RunnerError(
                        f"runner {index} failed {failures[index]} times in a row collecting {self.name}: "
                        f"{_describe(error)}; the run stops (its last checkpoint is intact)"
                    ) from None
                self._replace(index, error)
                pending[self.actors[index].collect.remote(*published, n_steps)] = index
        return [pieces[i] for i in range(self.count)]

    def _assemble(self, model: Any, buffer: Any, pieces: Sequence[RolloutPiece]) -> None:
        """The runners' columns in one rollout buffer of N*K envs, full, GAE included."""
        buffer.reset()
        for index, piece in enumerate(pieces):
            columns = self._columns(index)
            if isinstance(buffer.observations, dict):
                for key, value in buffer.observations.items():
                    value[:, columns] = piece.observations[key]
            else:
                buffer.observations[:, columns] = piece.observations
            for name in BUFFER_ARRAYS:
                getattr(buffer, name)[:, columns] = piece.arrays[name]
            if "action_masks" in piece.arrays:
                buffer.action_masks[:, columns] = piece.arrays["action_masks"]
        device = buffer.device

        def tensors(state: Any) -> Any:
            return map_state(lambda s: s.to(device), state)

        buffer.set_chunk_start_states(
            [
                cat_states([tensors(piece.chunk_states[k]) for piece in pieces])
                for k in range(len(pieces[0].chunk_states))
            ]
        )
        buffer.pos, buffer.full = buffer.buffer_size, True
        model.rollout_state = cat_states([tensors(piece.final_state) for piece in pieces])

    def _replay(self, model: Any, callback: BaseCallback, pieces: Sequence[RolloutPiece], n_steps: int) -> bool:
        """Each step's counter, dones and episode infos to the callbacks, as the in-process loop gives them."""
        infos_at: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for index, piece in enumerate(pieces):
            for step, env, info in piece.infos:
                infos_at.setdefault(step, []).append((index * self.envs_per_runner + env, info))
        for step in range(n_steps):
            dones = np.concatenate([piece.dones[step] for piece in pieces])
            infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
            for env, info in infos_at.get(step, []):
                infos[env] = dict(info)
            model.num_timesteps += self.num_envs
            callback.update_locals({"dones": dones, "infos": infos, "n_steps": step})
            if not callback.on_step():
                return False
            model._update_info_buffer(infos, dones)
        callback.on_rollout_end()
        return True

    # --- the VecEnv interface ----------------------------------------------------------------------

    def reset(self) -> Any:
        """Every runner resets its envs (seeded once after :meth:`seed`); their raw observations, in order."""
        if self._seeds[0] is not None:
            self.seed_base = int(self._seeds[0])
        seeds = [self._seed(i, self.replacements[i]) if self._seeds[0] is not None else None for i in range(self.count)]
        found = self.ray.get([actor.reset.remote(seed) for actor, seed in zip(self.actors, seeds)])
        self._reset_seeds()
        if isinstance(found[0], dict):
            return {key: np.concatenate([obs[key] for obs in found]) for key in found[0]}
        return np.concatenate(found)

    def step_async(self, actions: np.ndarray) -> None:
        raise RuntimeError(
            "a RunnerVecEnv collects whole rollouts in its runners (RecurrentPPO.collect_rollouts); it does not step "
            "one action at a time"
        )

    def step_wait(self) -> Any:
        raise RuntimeError("a RunnerVecEnv collects whole rollouts in its runners; it does not step")

    def _split(self, indices: Any) -> dict[int, list[int]]:
        by_runner: dict[int, list[int]] = {}
        for i in self._get_indices(indices):
            by_runner.setdefault(i // self.envs_per_runner, []).append(i % self.envs_per_runner)
        return by_runner

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        calls = [self.actors[r].get_attr.remote(attr_name, envs) for r, envs in self._split(indices).items()]
        return [value for values in self.ray.get(calls) for value in values]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        self.ray.get(
            [self.actors[r].set_attr.remote(attr_name, value, envs) for r, envs in self._split(indices).items()]
        )

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        calls = [
            self.actors[r].env_method.remote(method_name, method_args, method_kwargs, envs)
            for r, envs in self._split(indices).items()
        ]
        return [value for values in self.ray.get(calls) for value in values]

    def has_attr(self, attr_name: str) -> bool:
        return bool(self.ray.get(self.actors[0].has_attr.remote(attr_name)))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        calls = [self.actors[r].env_is_wrapped.remote(wrapper_class, envs) for r, envs in self._split(indices).items()]
        return [value for values in self.ray.get(calls) for value in values]

    def pids(self) -> list[int]:
        """The process id of every runner, in order."""
        return list(self.ray.get([actor.pid.remote() for actor in self.actors]))

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        self.actors = []
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()


def runner_spec(model: Any) -> RunnerSpec:
    """What a runner needs to build a CPU copy of ``model`` (its class, policy and collection settings)."""
    normalizer = model.get_vec_normalize_env()
    normalize = None
    if normalizer is not None:
        normalize = dict(
            norm_obs=normalizer.norm_obs,
            norm_reward=normalizer.norm_reward,
            clip_obs=normalizer.clip_obs,
            clip_reward=normalizer.clip_reward,
            gamma=normalizer.gamma,
            epsilon=normalizer.epsilon,
            norm_obs_keys=normalizer.norm_obs_keys,
        )
    return RunnerSpec(
        algorithm=type(model),
        policy=type(model.policy),
        policy_kwargs=dict(model.policy_kwargs),
        n_steps=model.n_steps,
        sequence_length=model.sequence_length,
        burn_in=model.burn_in,
        gamma=model.gamma,
        gae_lambda=model.gae_lambda,
        use_sde=model.use_sde,
        sde_sample_freq=model.sde_sample_freq,
        stats_window_size=model._stats_window_size,
        normalize=normalize,
    )


def _describe(error: BaseException) -> str:
    """One line for a runner's failure: what its env raised, or that its process died."""
    cause = getattr(error, "cause", None)  # RayTaskError: the exception raised inside the actor
    if isinstance(cause, BaseException) and "ActorDied" not in type(error).__name__:
        first = (str(cause).strip().splitlines() or [""])[0]
        return f"its env raised {type(cause).__name__}: {first[:300]}"
    return f"its process died ({type(error).__name__})"
