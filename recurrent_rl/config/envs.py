"""Making envs from a config: ids and ``gymnasium.make`` keyword arguments checked, one env
(evaluation, recording) or the training VecEnv (seeded, in VecNormalize when configured).

Every env of the package is made here, so the same checks apply wherever an env is made and
errors read the same: an unknown id suggests close ones, bad keyword arguments name the env.

May import: :mod:`recurrent_rl.config.schema`, the leaf modules; Gymnasium, SB3 and
``recurrent_rl.envs`` inside the functions (listing presets needs none of them).
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from recurrent_rl.config.schema import ConfigError
from recurrent_rl.io.run_folder import RunError
from recurrent_rl.received import shorten

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from recurrent_rl.config.train import TrainConfig

VIZ_HINT = "install the viz extra: pip install 'recurrent_rl[viz]'"


class EnvError(RunError):
    """An env that cannot be made as asked (keyword arguments, a missing package, no frames to draw);
    a :class:`~recurrent_rl.io.run_folder.RunError`, as it was when evaluation made its envs."""


def check_env_id(env_id: str, key: str = "env") -> None:
    """Raise :class:`ConfigError` (for config key ``key``) if ``env_id`` is not registered, suggesting close matches."""
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    if env_id in gym.registry:
        return
    lowered = {k.lower(): k for k in gym.registry}
    close = []
    if len(env_id) <= 200:  # difflib's cost grows with the length; no id is that long
        close = [lowered[c] for c in difflib.get_close_matches(env_id.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"unknown env id {shorten(env_id)}.{hint} `recurrent-rl envs` lists the pomdp/ suite; any registered "
        "Gymnasium id works.",
        key=key,
    )


def check_env_kwargs(env_kwargs: Mapping[str, Any], key: str = "env_kwargs") -> None:
    """The keyword arguments that ``gymnasium.make`` itself reads, checked (the env checks its own).

    ``max_episode_steps`` must be a positive integer: Gymnasium takes ``-1`` or ``0`` as "no time
    limit" (an episode that never ends on an env without terminal states).
    """
    if "max_episode_steps" in env_kwargs:
        steps = env_kwargs["max_episode_steps"]
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(
                f"expected a positive integer (the episode's time limit), got {shorten(steps)}; leave the key out "
                "for the env's own limit",
                key=f"{key}.max_episode_steps",
            )


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, render_mode: str | None = None) -> Any:
    """``gymnasium.make`` with errors from bad kwargs or missing render support as :class:`EnvError`."""
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        with warnings.catch_warnings():
            # an env without rgb_array only warns here; evaluate() says so as an error instead
            warnings.filterwarnings("ignore", message=".*render_mode.*", category=UserWarning)
            return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"{env_id} needs a package that is not installed ({error}); {VIZ_HINT}") from None
    except (TypeError, ValueError, gym.error.Error) as error:
        if render_mode is not None:
            raise EnvError(
                f"{env_id} cannot draw frames ({error}); a video needs render_mode {render_mode!r}"
            ) from None
        raise EnvError(f"cannot make env {env_id} with env_kwargs {env_kwargs}: {error}") from None


def make_training_env(config: TrainConfig, seed: int) -> VecEnv:
    """``config.n_envs`` envs (seeded ``seed``, ``seed + 1``, ...), in VecNormalize if configured."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    check_env_id(config.env)
    try:
        env: VecEnv = make_vec_env(config.env, n_envs=config.n_envs, seed=seed, env_kwargs=dict(config.env_kwargs))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{config.env} rejects these env_kwargs {dict(config.env_kwargs)}: {error}", key="env_kwargs"
        ) from None
    norm = config.normalize
    if norm.enabled:
        # rewards are scaled by the spread of returns discounted as the values are (rl-baselines3-zoo
        # does the same: "Use the same discount factor as for the algorithm"), unless set apart
        gamma = config.gamma if norm.gamma is None else norm.gamma
        env = VecNormalize(
            env, norm_obs=norm.norm_obs, norm_reward=norm.norm_reward, clip_obs=norm.clip_obs, gamma=gamma
        )
    return env
