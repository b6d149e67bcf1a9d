"""Presets: one YAML config per environment of the ``pomdp/`` suite, shipped inside the package.

A preset is a config file like any other (see :mod:`recurrent_rl.runs.config`), validated by the same
code; its name is its file name without ``.yaml``. ``recurrent-rl train --preset NAME`` uses
one; ``recurrent-rl presets`` lists them. :data:`DEFAULT_PRESET` is the README's main job.

A new env in the suite needs a preset: ``tests/test_config.py`` fails until it has one, and
:func:`preset_template` writes a starting point.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib import resources

from recurrent_rl.runs.config import ConfigError, TrainConfig, config_from_dict, parse_yaml

DEFAULT_PRESET = "cartpole-novel-gru"
SUFFIX = ".yaml"


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def preset_text(name: str) -> str:
    """The YAML of preset ``name``; :class:`ConfigError` (with close matches) if there is none."""
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown preset {name!r}.{hint} `recurrent-rl presets` lists them: {', '.join(names)}")
    return resources.files(__name__).joinpath(name + SUFFIX).read_text(encoding="utf-8")


def load_preset(name: str, overrides: Iterable[str] = (), check_env: bool = True) -> TrainConfig:
    """The config of preset ``name`` with ``KEY=VALUE`` overrides applied."""
    source = f"preset {name!r}"
    return config_from_dict(parse_yaml(preset_text(name), source), overrides, source=source, check_env=check_env)


def presets_by_env() -> dict[str, list[str]]:
    """Env id -> names of the presets that train on it (env existence not checked)."""
    by_env: dict[str, list[str]] = {}
    for name in preset_names():
        by_env.setdefault(load_preset(name, check_env=False).env, []).append(name)
    return by_env


def preset_template(env_id: str) -> str:
    """A starting preset for ``env_id`` (untuned defaults chosen from its spaces), as YAML."""
    import gymnasium as gym
    from gymnasium import spaces

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    env = gym.make(env_id)
    try:
        continuous = isinstance(env.action_space, spaces.Box)
        image = isinstance(env.observation_space, spaces.Box) and len(env.observation_space.shape) == 3
        dict_obs = isinstance(env.observation_space, spaces.Dict)
    finally:
        env.close()
    kind = "Cnn" if image else "MultiInput" if dict_obs else "Mlp"
    values = dict(
        description=f"GRU on {env_id} (untuned defaults)",
        env=env_id,
        n_envs=8,
        normalize=continuous,
        n_timesteps=100_000,
        policy=f"{kind}GruPolicy",
        policy_kwargs=dict(hidden_size=64, ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64])),
        learning_rate="lin_1e-3",
        n_steps=128 if continuous else 64,
        batch_size=256,
        n_epochs=10,
        gamma=0.99,
        gae_lambda=0.95,
        ent_coef=0.0 if continuous else 0.01,
    )
    config = config_from_dict(values)  # the template must itself be a valid config
    import yaml

    return yaml.safe_dump({k: config.to_dict()[k] for k in values}, sort_keys=False, default_flow_style=None)


__all__ = ["DEFAULT_PRESET", "load_preset", "preset_names", "preset_template", "presets_by_env", "ConfigError"]
