"""Configs: typed, validated YAML configs, the presets, and the envs a config makes.

- :mod:`.schema`: the config machinery of both sides (frozen dataclasses checked on every
  construction, config files, ``--set`` overrides, YAML out);
- :mod:`.train`: :class:`TrainConfig`, the config of ``recurrent-rl train`` (its keys, the keys of
  one algorithm family, and the checks that span sections);
- :mod:`.sections`: its sections (``policy_kwargs``, ``encoder``, ``normalize``, ``eval``,
  ``checkpoint``, ``runners``) and the policy, memory and activation names;
- :mod:`.loading`: reading one (:func:`load_config`: a file, the zoo's layout, ``--set``
  overrides, the rules for a received file);
- :mod:`.presets`: the shipped presets (``<name>.yaml``; ``<name>.pretrain.yaml`` for pretraining);
- :mod:`.envs`: env ids and keyword arguments checked, the user's env modules imported, one env made.

May import: ``io`` (run-folder files), ``envs`` and the leaf modules (``received``, ``schedules``,
``errors``); Gymnasium and SB3 inside the functions that make envs. Reading a config loads no
torch. The supervised side's configs (:mod:`recurrent_rl.supervised.config`) build on
:mod:`.schema`; runs, export, sweeps and the command line build on this package; nothing below
it imports it.

``recurrent_rl.config`` was the training config's module before it became this package; its
names are here too (``from recurrent_rl.config import TrainConfig, load_config``).
"""

from recurrent_rl.config.envs import EnvFactory, check_env_id, check_env_kwargs, make_env
from recurrent_rl.config.loading import apply_overrides, config_from_dict, config_keys, load_config, unwrap_zoo_layout
from recurrent_rl.config.schema import ConfigError, Section, UserInputError, save_config, setting
from recurrent_rl.config.sections import (
    ACTIVATIONS,
    MEMORIES,
    POLICIES,
    CheckpointConfig,
    EncoderConfig,
    EvalConfig,
    NetArch,
    NormalizeConfig,
    PolicyConfig,
    RunnersConfig,
)
from recurrent_rl.config.train import (
    MAX_SEED,
    MAX_TIMESTEPS,
    Linear,
    TrainConfig,
    config_to_yaml,
    make_schedule,
    memory_of,
)

__all__ = [
    "ACTIVATIONS",
    "MAX_SEED",
    "MAX_TIMESTEPS",
    "MEMORIES",
    "POLICIES",
    "CheckpointConfig",
    "ConfigError",
    "EnvFactory",
    "EncoderConfig",
    "EvalConfig",
    "Linear",
    "NetArch",
    "NormalizeConfig",
    "PolicyConfig",
    "RunnersConfig",
    "Section",
    "TrainConfig",
    "UserInputError",
    "apply_overrides",
    "check_env_id",
    "check_env_kwargs",
    "config_from_dict",
    "config_keys",
    "config_to_yaml",
    "load_config",
    "make_env",
    "make_schedule",
    "memory_of",
    "save_config",
    "setting",
    "unwrap_zoo_layout",
]
