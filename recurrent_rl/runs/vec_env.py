"""The training VecEnv of a config: its envs in this process, in subprocesses, or in Ray runners.

- ``vec_env: dummy`` (the default): SB3's ``DummyVecEnv``, the envs stepped one after another in
  this process;
- ``vec_env: subproc``: one process per env on this machine
  (:class:`~recurrent_rl.runners.CheckedSubprocVecEnv`, SB3's ``SubprocVecEnv``);
- ``runners.count: N``: N Ray actors of ``n_envs / N`` envs each, collecting whole rollouts with a
  copy of the policy (:class:`~recurrent_rl.runners.RunnerVecEnv`).

Every env is made by an :class:`~recurrent_rl.config.envs.EnvFactory`, which imports the config's
``gym_packages`` in whatever process it runs in. VecNormalize wraps the result when the config
asks for it: its statistics stay in this process (the runners' batches are merged into them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recurrent_rl.config.envs import EnvError, EnvFactory, check_env_id
from recurrent_rl.config.schema import ConfigError
from recurrent_rl.errors import UserInputError
from recurrent_rl.runners.subproc import EnvProcessError

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from recurrent_rl.config.train import TrainConfig


def make_training_env(config: TrainConfig, seed: int) -> VecEnv:
    """``config.n_envs`` envs (seeded ``seed``, ``seed + 1``, ...), where the config says they step, in
    VecNormalize if configured."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    check_env_id(config.env, packages=config.gym_packages)
    factory = EnvFactory.of(config)
    try:
        if config.runners.count:
            env: Any = _runners(config, factory)
            env.seed(seed)
        elif config.vec_env == "subproc":
            from recurrent_rl.runners.subproc import CheckedSubprocVecEnv

            env = make_vec_env(
                factory,
                n_envs=config.n_envs,
                seed=seed,
                vec_env_cls=CheckedSubprocVecEnv,
                vec_env_kwargs={"name": config.env},
            )
        else:
            env = make_vec_env(factory, n_envs=config.n_envs, seed=seed)
    except UserInputError:  # already one line that says what to do (no Ray, a cluster that does not answer)
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{config.env} rejects these env_kwargs {dict(config.env_kwargs)}: {error}", key="env_kwargs"
        ) from None
    except EnvProcessError as error:  # the env could not be made in its worker: before any work, one line
        raise EnvError(f"{error}; nothing was trained") from None
    norm = config.normalize
    if norm.enabled:
        # rewards are scaled by the spread of returns discounted as the values are (rl-baselines3-zoo
        # does the same: "Use the same discount factor as for the algorithm"), unless set apart
        gamma = config.gamma if norm.gamma is None else norm.gamma
        env = VecNormalize(
            env, norm_obs=norm.norm_obs, norm_reward=norm.norm_reward, clip_obs=norm.clip_obs, gamma=gamma
        )
    return env


def _runners(config: TrainConfig, factory: EnvFactory) -> Any:
    from recurrent_rl.runners.group import RunnerVecEnv

    runners = config.runners
    return RunnerVecEnv(
        factory,
        count=runners.count,
        envs_per_runner=config.envs_per_runner,
        address=runners.address,
        cpus_per_runner=runners.cpus_per_runner,
        max_restarts=runners.max_restarts,
    )
