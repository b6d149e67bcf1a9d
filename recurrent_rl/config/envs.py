"""Making envs from a config: ids and ``gymnasium.make`` keyword arguments checked, the user's
own env modules imported (``gym_packages``, ``module:EnvId``), one env made (:func:`make_env`, or
:class:`EnvFactory` in another process).

Every env of the package is made here, so the same checks apply wherever an env is made and
errors read the same: an unknown id suggests close ones, bad keyword arguments name the env.

May import: :mod:`recurrent_rl.config.schema`, the leaf modules; Gymnasium, SB3 and
``recurrent_rl.envs`` inside the functions (listing presets needs none of them).
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from recurrent_rl.config.schema import ConfigError
from recurrent_rl.io.run_folder import RunError
from recurrent_rl.received import shorten

if TYPE_CHECKING:
    from recurrent_rl.config.train import TrainConfig

VIZ_HINT = "install the viz extra: pip install 'recurrent_rl[viz]'"


class EnvError(RunError):
    """An env that cannot be made as asked (keyword arguments, a missing package, no frames to draw);
    a :class:`~recurrent_rl.io.run_folder.RunError`, as it was when evaluation made its envs."""


def import_modules(packages: Iterable[str], env_id: str = "", key: str = "gym_packages") -> None:
    """Import ``packages`` (and the module of an ``env_id`` written ``module:EnvId``) so that their
    envs register themselves, as ``gymnasium.make("module:EnvId")`` and rl-baselines3-zoo's
    ``--gym-packages`` do. Only for modules the user named (the command line, Python, or a run's
    signed record of them): importing a module runs its code.

    :raises ConfigError: a module that does not import, with its error
    """
    import importlib

    module, colon, _ = env_id.partition(":")
    for index, name in enumerate([*packages, *([module] if colon and module else [])]):
        try:
            importlib.import_module(name)
        except Exception as error:  # a user's module may raise anything while it imports
            where = f"{key}[{index}]" if index < len(list(packages)) else "env"
            raise ConfigError(
                f"cannot import {shorten(name)} ({type(error).__name__}: {shorten(str(error), 200)}): is the module "
                "on the Python path (installed, or in the current folder)?",
                key=where,
            ) from None


def check_env_id(env_id: str, key: str = "env", packages: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` (for config key ``key``) if ``env_id`` is not registered, suggesting close
    matches; ``packages`` (and ``env_id``'s module, for ``module:EnvId``) are imported first."""
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    import_modules(packages, env_id)
    env_id = env_id.partition(":")[2] or env_id
    if env_id in gym.registry:
        return
    lowered = {k.lower(): k for k in gym.registry}
    close = []
    if len(env_id) <= 200:  # difflib's cost grows with the length; no id is that long
        close = [lowered[c] for c in difflib.get_close_matches(env_id.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"unknown env id {shorten(env_id)}.{hint} `recurrent-rl envs` lists the pomdp/ suite; any registered "
        "Gymnasium id works (your own env: --gym-packages my_pkg, or --env my_pkg:MyEnv-v0).",
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


def make_env(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    render_mode: str | None = None,
    packages: Iterable[str] = (),
) -> Any:
    """``gymnasium.make`` with errors from bad kwargs or missing render support as :class:`EnvError`;
    ``packages`` (the config's ``gym_packages``) are imported first."""
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    if packages:
        import_modules(packages)

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


@dataclass(frozen=True)
class EnvFactory:
    """Makes one env of a config, in any process: the ``pomdp/`` registry and the config's
    ``gym_packages`` are imported there first (a subprocess worker, a Ray runner or a sweep worker
    starts with neither). Picklable, so SB3's ``SubprocVecEnv`` and Ray can send it."""

    env_id: str
    env_kwargs: tuple[tuple[str, Any], ...] = ()
    gym_packages: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: TrainConfig) -> EnvFactory:
        return cls(config.env, tuple(sorted(config.env_kwargs.items())), tuple(config.gym_packages))

    def __call__(self, **kwargs: Any) -> Any:
        return make_env(self.env_id, {**dict(self.env_kwargs), **kwargs}, packages=self.gym_packages)
