"""Presets: YAML configs shipped inside the package, one per environment of the ``pomdp/`` suite
for training, and a few for pretraining encoders.

A preset is a config file like any other, validated by the same code: ``<name>.yaml`` is a
training config (:mod:`recurrent_rl.config.train`), ``<name>.pretrain.yaml`` a pretraining config
(:mod:`recurrent_rl.supervised.config`); its name is the file name without the suffix.
``recurrent-rl train --preset NAME`` and ``recurrent-rl pretrain --preset NAME`` use one
(:func:`load_preset`, :func:`recurrent_rl.supervised.config.load_pretrain_preset`);
``recurrent-rl presets`` (``--pretrain``) lists them. :data:`DEFAULT_PRESET` is the README's main job.

A new env in the suite needs a training preset: ``tests/test_config.py`` fails until it has one,
and :func:`preset_template` writes a starting point.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib import resources
from typing import Any

from recurrent_rl.config.loading import config_from_dict
from recurrent_rl.config.train import ConfigError, TrainConfig, parse_yaml

DEFAULT_PRESET = "cartpole-novel-gru"
SAC_PRESET = "pendulum-novel-sac"  # what `train --algo sac` uses without --preset or --config
SUFFIX = ".yaml"
PRETRAIN_SUFFIX = ".pretrain.yaml"
# kind -> (file suffix, what the messages call one, the command that lists them)
KINDS = {
    "train": (SUFFIX, "preset", "recurrent-rl presets"),
    "pretrain": (PRETRAIN_SUFFIX, "pretraining preset", "recurrent-rl presets --pretrain"),
}


# presets of the deprecated env ids (recurrent_rl.envs.DEPRECATED_IDS) -> the one preset of that env now
RENAMED = {
    "tmaze-l10-gru": "tmaze-gru",
    "repeat-first-easy-gru": "repeat-first-gru",
    "repeat-previous-k2-gru": "repeat-previous-gru",
    "count-recall-easy-gru": "count-recall-gru",
    "visit-all-l8-gru": "visit-all-gru",
}


def preset_names(kind: str = "train") -> list[str]:
    """Names of the shipped presets of ``kind`` (``train`` or ``pretrain``), sorted."""
    suffix = _kind(kind)[0]
    files = [p.name for p in resources.files(__name__).iterdir()]
    if kind == "train":
        files = [f for f in files if not f.endswith(PRETRAIN_SUFFIX)]
    return sorted(f[: -len(suffix)] for f in files if f.endswith(suffix))


def preset_text(name: str, kind: str = "train") -> str:
    """The YAML of preset ``name``; :class:`ConfigError` (with close matches) if there is none."""
    suffix, what, lister = _kind(kind)
    names = preset_names(kind)
    if kind == "train" and name in RENAMED:
        raise ConfigError(
            f"preset {name!r} is gone: its env is the one of preset {RENAMED[name]!r} (one id and one preset per "
            f"env; that preset holds the tuned settings): use --preset {RENAMED[name]}"
        )
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown {what} {name!r}.{hint} `{lister}` lists them: {', '.join(names)}")
    return resources.files(__name__).joinpath(name + suffix).read_text(encoding="utf-8")


def preset_values(name: str, kind: str = "train") -> dict[str, Any]:
    """The mapping in preset ``name``, not yet validated (a config file laid over it comes next)."""
    return parse_yaml(preset_text(name, kind), preset_source(name, kind))


def load_preset(name: str, overrides: Iterable[str] = (), check_env: bool = True) -> TrainConfig:
    """The training config of preset ``name`` with ``KEY=VALUE`` overrides applied."""
    return config_from_dict(preset_values(name), overrides, source=preset_source(name), check_env=check_env)


def _kind(kind: str) -> tuple[str, str, str]:
    if kind not in KINDS:
        raise ValueError(f"preset kind {kind!r}: choose one of {sorted(KINDS)}")
    return KINDS[kind]


def preset_source(name: str, kind: str = "train") -> str:
    """How errors name preset ``name``: ``preset 'x'``, ``pretraining preset 'x'``."""
    return f"{_kind(kind)[1]} {name!r}"


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


__all__ = [
    "DEFAULT_PRESET",
    "ConfigError",
    "load_preset",
    "preset_names",
    "preset_source",
    "preset_template",
    "preset_values",
    "presets_by_env",
]
