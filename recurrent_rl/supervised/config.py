"""Configs of the supervised side: what to record, the model's architecture, the fit, a pretraining run.

The same machinery as the RL configs (:mod:`recurrent_rl.config.schema`): frozen dataclasses
checked however they are built, unknown keys rejected with the list of valid ones, types and
ranges checked, errors that name the dotted key; ``--set KEY=VALUE`` overrides read as YAML; the
resolved config written as YAML into the run folder (``config.yaml``), which ``--config`` reads
back. Presets are YAML files next to the RL presets, ``recurrent_rl/config/presets/<name>.pretrain.yaml``,
read by :mod:`recurrent_rl.config.presets` (:func:`load_pretrain_preset`).

A pretraining config (every key optional except ``data.env_id``)::

    name: pretrain               # run folder prefix
    description: ""              # shown by recurrent-rl presets --pretrain
    data:  env_id, n_steps, policy, target, target_indices, seed
    model: memory, hidden_size, num_layers, dropout, input_layers, activation
    train: epochs, batch_size, learning_rate, weight_decay, max_grad_norm, val_fraction,
           patience, normalize_inputs, normalize_targets, seed

:func:`pretrain_config_keys` lists every key with its type, default and help. This module does
not import torch (the memory check imports it when a config is built).

A config file is data, whoever wrote it (:mod:`recurrent_rl.received`): :func:`resolve_config`
refuses a ``data.policy`` that the file names as ``module:function`` (importing the module runs
its code) unless the run folder the file is in records, signed, that the user's own command gave
it (:mod:`recurrent_rl.io.trust`); a ``data.policy`` path (``.zip``) is read relative to the
file's folder and must stay inside it. ``--set data.policy=...`` on the command line, or a config
built in Python, is the user's own and is not restricted so.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recurrent_rl.config import schema
from recurrent_rl.config.schema import ConfigError, Section, describe_keys, setting
from recurrent_rl.received import ReceivedFileError, load_yaml, path_inside, shorten

TARGETS = ("state", "next_observation")
MAX_SEED = 2**31 - 1  # numpy seeds below 2**32; episodes add their index to the seed
MAX_NAME = 100  # the run folder adds __<env>__<memory>__seed<N>__<time> to the name
ACTIVATIONS = tuple(schema.ACTIVATIONS)  # the names; schema.activation_class gives the torch module


@dataclass(frozen=True)
class FitConfig(Section):
    """Optimisation settings of :func:`recurrent_rl.supervised.trainer.fit` (``train:`` in a pretraining config).

    ``seed`` seeds the split, the shuffling and dropout; seed torch with it before building the
    model for the same initial weights too, as :func:`recurrent_rl.supervised.pretrain.pretrain` does.
    """

    epochs: int = setting(50, "maximum passes over the training sequences", low=1)
    batch_size: int = setting(32, "sequences per minibatch", low=1)
    learning_rate: float = setting(1e-3, "AdamW step size", above=0)
    weight_decay: float = setting(0.0, "AdamW decoupled weight decay", low=0)
    max_grad_norm: float = setting(1.0, "clip the global gradient norm to this (0: no clipping)", low=0)
    val_fraction: float = setting(
        0.2, "share of sequences held out for validation (0: none, and no early stop)", low=0, below=1
    )
    patience: int = setting(10, "epochs without a better validation loss before stopping", low=1)
    normalize_inputs: bool = setting(
        True,
        "standardise inputs with training-split statistics (kept in the model and its encoder; "
        "off when the data covers a narrower range than the policy will meet)",
    )
    normalize_targets: bool = setting(True, "learn regression targets standardised with training-split statistics")
    seed: int = setting(
        0, "seeds the split, the shuffling, dropout and (in pretraining) the initial weights", low=0, high=MAX_SEED
    )


@dataclass(frozen=True)
class DataConfig(Section):
    """What to record, and what the model learns to output."""

    env_id: str = setting(help="Gymnasium env id to record", example="pomdp/CartPoleNoVel-v1")
    n_steps: int = setting(20_000, "transitions to record (the budget may cut the last episode)", low=1)
    policy: str = setting("random", "who acts: random, a saved model .zip, or module:function (obs -> action)")
    target: Literal[TARGETS] = setting("state", "the output: state (what the env hides) or next_observation")  # type: ignore[valid-type]
    target_indices: tuple[int, ...] | None = setting(None, "keep only these entries of the target (null: all)")
    seed: int = setting(0, "seed of the env and of the random policy", low=0, high=MAX_SEED)

    def _check(self) -> None:
        if self.policy != "random" and not self.policy.endswith(".zip") and ":" not in self.policy:
            raise ConfigError(
                f"expected 'random', a saved model path ending in .zip, or 'module:function', got "
                f"{shorten(self.policy)}",
                key="policy",
            )


@dataclass(frozen=True)
class EncoderModelConfig(Section):
    """The sequence model's architecture: the causal part that becomes a policy's encoder.

    :class:`recurrent_rl.supervised.models.SequenceModelConfig` adds the sizes and the task to it.
    """

    memory: str = setting("gru", "memory core: gru, lstm or rnn")
    hidden_size: int = setting(64, "units per memory layer", low=1)
    num_layers: int = setting(1, "stacked memory layers", low=1)
    dropout: float = setting(0.0, "dropout between stacked memory layers, training only", low=0, below=1)
    input_layers: tuple[int, ...] = setting((), "sizes of an MLP applied to each step before the memory (may be empty)")
    activation: Literal[ACTIVATIONS] = setting("tanh", "activation of the input MLP")  # type: ignore[valid-type]

    def _check(self) -> None:
        from recurrent_rl.nets.memory import check_memory_options

        try:
            check_memory_options(self.memory, self.hidden_size, self.num_layers)
        except ValueError as error:
            raise ConfigError(str(error), key="memory") from None
        if any(n < 1 for n in self.input_layers):
            raise ConfigError(
                f"layer sizes must be positive integers, got {list(self.input_layers)}", key="input_layers"
            )


@dataclass(frozen=True)
class PretrainConfig(Section):
    """A whole pretraining run (:func:`recurrent_rl.supervised.pretrain.pretrain`)."""

    data: DataConfig = setting(help="what to record")
    model: EncoderModelConfig = setting(help="the sequence model's architecture", factory=EncoderModelConfig)
    train: FitConfig = setting(help="the optimisation", factory=FitConfig)
    name: str = setting("pretrain", "run folder prefix: <runs-dir>/<name>__<env>__<memory>__seed<seed>__<time>/")
    description: str = setting("", "free text shown by recurrent-rl presets --pretrain")

    def _check(self) -> None:
        from recurrent_rl.io.run_folder import is_plain_name

        if not is_plain_name(self.name):
            raise ConfigError(
                f"expected a plain folder name (letters, digits and . _ + = -, no slashes), got {shorten(self.name)}",
                key="name",
            )
        if len(self.name) > MAX_NAME:
            raise ConfigError(
                f"expected a folder name prefix of at most {MAX_NAME} characters, got {len(self.name)}", key="name"
            )


# --- reading, overriding ---------------------------------------------------------------------------

OVERRIDE_EXAMPLE = "train.epochs=20"


def pretrain_config_from_dict(
    values: Mapping[str, Any], overrides: Iterable[str] = (), source: str | None = None, check_env: bool = True
) -> PretrainConfig:
    """Build a :class:`PretrainConfig` from a mapping plus ``KEY=VALUE`` overrides (dotted keys)."""
    try:
        config = PretrainConfig.from_dict(apply_overrides(values, overrides))
    except ConfigError as error:
        raise error.with_source(source) if source else error from None
    if check_env:
        from recurrent_rl.config.train import check_env_id

        check_env_id(config.data.env_id, key="data.env_id")
    return config


def load_pretrain_preset(name: str, overrides: Iterable[str] = (), check_env: bool = True) -> PretrainConfig:
    """The config of pretraining preset ``name``, with overrides.

    The preset is ``recurrent_rl/config/presets/<name>.pretrain.yaml``.
    """
    from recurrent_rl.config.presets import preset_source, preset_values

    values = preset_values(name, "pretrain")
    return pretrain_config_from_dict(values, overrides, source=preset_source(name, "pretrain"), check_env=check_env)


def resolve_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] | None = None,
    check_env: bool = True,
) -> PretrainConfig:
    """Preset, then config file laid over it, then ``--set`` overrides on top of both."""
    from recurrent_rl.config.presets import preset_source, preset_values

    values: dict[str, Any] = {}
    sources = []
    overrides = list(overrides or [])
    if preset:
        values = preset_values(preset, kind="pretrain")
        sources.append(preset_source(preset, "pretrain"))
    if config_file is not None:
        given = {override.partition("=")[0].strip() for override in overrides}
        from_file = load_config_file(config_file)
        if not given & {"data", "data.policy"}:
            from_file = _received_policy(from_file, Path(config_file))
        values = schema.merge(values, from_file)
        sources.append(str(config_file))
    if not values and not overrides:
        raise ConfigError("nothing to pretrain: give a --preset, a --config file, or --set data.env_id=...")
    return pretrain_config_from_dict(values, overrides, source=" + ".join(sources) or None, check_env=check_env)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a config file (``.yaml``/``.yml``, ``.json`` or ``.toml``), not yet validated
    (and not checked as :func:`resolve_config` checks a file's ``data.policy``)."""
    return schema.read_config_file(path)


def _received_policy(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """``values`` read from the config file ``path``, with its ``data.policy`` checked as data:
    a ``.zip`` path made absolute inside the file's folder, a ``module:function`` refused unless
    the run folder's signed record says the user's own command gave it."""
    data = values.get("data")
    policy = data.get("policy") if isinstance(data, Mapping) else None
    if not isinstance(policy, str) or policy == "random" or not isinstance(data, Mapping):
        return values
    where = f"{path}: config key 'data.policy'"
    if policy.endswith(".zip"):
        try:
            inside = path_inside(path.parent, policy, where)
        except ReceivedFileError as error:
            raise ReceivedFileError(
                f"{error}; a path in a config file is read relative to the file's folder and must stay inside it "
                "(a config file may come from anyone): name the model on the command line, "
                f"--set data.policy=PATH"
            ) from None
        return {**values, "data": {**data, "policy": str(inside)}}
    from recurrent_rl.io.trust import module_of, trusted_names

    module = module_of(policy)
    if module is None:
        return values  # not a module: the config's own check says what is expected
    if trusted_names(path.parent).get("data.policy") == policy:
        print(
            f"note: data.policy {shorten(policy)} imports the module {shorten(module)}: your own command named it "
            f"when {path.parent} was made (its run.json says so, signed)",
            file=sys.stderr,
        )
        return values
    raise ReceivedFileError(
        f"{where} is {shorten(policy)}, a function of the module {shorten(module)}, which Python would import, "
        "running its code: a module named in a file is never imported. If you trust it, name it yourself: "
        f"--set data.policy={schema.clip(policy)}"
    )


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=5", "model.memory=lstm"]`` applied to a copy of a config mapping (keys checked)."""
    return schema.apply_overrides(config, overrides, PretrainConfig, example=OVERRIDE_EXAMPLE)


def parse_value(text: str) -> Any:
    """A ``--set`` value, read as YAML like every override (``20``, ``[1, 3]``, ``null``, ``lstm``)."""
    return load_yaml(text, "--set value") if text.strip() else None


def pretrain_config_keys() -> list[str]:
    """One line per pretraining config key (dotted), with its type, default and help."""
    return describe_keys(PretrainConfig)


def deprecated_name(module: str, name: str) -> Any:
    """Module ``__getattr__`` of the modules that had the supervised ``TrainConfig``: that name, renamed
    :class:`FitConfig` (``recurrent_rl.config.train.TrainConfig`` is the RL run's), with a DeprecationWarning."""
    if name != "TrainConfig":
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.TrainConfig is deprecated: use FitConfig (recurrent_rl.supervised.FitConfig)",
        DeprecationWarning,
        stacklevel=3,
    )
    return FitConfig


__all__ = [
    "TARGETS",
    "DataConfig",
    "EncoderModelConfig",
    "FitConfig",
    "PretrainConfig",
    "apply_overrides",
    "load_config_file",
    "load_pretrain_preset",
    "parse_value",
    "pretrain_config_from_dict",
    "pretrain_config_keys",
    "resolve_config",
]
