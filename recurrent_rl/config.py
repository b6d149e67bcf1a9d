"""Typed training configs: frozen dataclasses, read from and written to YAML.

A config file is one YAML mapping in rl-baselines3-zoo's layout: the algorithm's hyperparameters
at the top level under their SB3 names (``n_steps``, ``learning_rate: lin_1e-3``, ...), next to
``env``, ``n_envs``, ``n_timesteps``, ``normalize``, ``policy`` and ``policy_kwargs``. A zoo file
keyed by env id (``pomdp/CartPoleNoVel-v1: {n_steps: 32, ...}``) is read too.

Every value is checked against the field's type and range when a config is built, however it is
built (file, ``--set``, Python). Errors name the key, the expected type and the valid choices.
The resolved config (every field, defaults included) is what a run folder keeps as
``config.yaml``; :func:`load_config` on it rebuilds the same config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from recurrent_rl.sequences import check_sequence_sizes


class UserInputError(ValueError):
    """Bad input from the user (a config, a path, a name): the CLI prints it without a traceback."""


class ConfigError(UserInputError):
    """A config value is missing, unknown, of the wrong type or out of range."""

    def __init__(self, message: str, key: str | None = None, source: str | None = None):
        super().__init__(message)
        self.message, self.key, self.source = message, key, source

    def under(self, prefix: str) -> ConfigError:
        """The same error for a key nested under ``prefix``."""
        return ConfigError(self.message, f"{prefix}.{self.key}" if self.key else prefix, self.source)

    def with_source(self, source: str) -> ConfigError:
        return ConfigError(self.message, self.key, self.source or source)

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        key = f"config key '{self.key}': " if self.key else ""
        return f"{where}{key}{self.message}"


# --- learning-rate and clip-range schedules ---------------------------------------------------

_LINEAR = re.compile(r"^lin_(?P<value>.+)$")


class Linear:
    """``initial * progress_remaining``: falls linearly from ``initial`` to 0 (zoo's ``lin_<x>``)."""

    def __init__(self, initial: float):
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining

    def __repr__(self) -> str:
        return f"Linear({self.initial})"


def make_schedule(value: float | str) -> float | Linear:
    """A config schedule (a number, or ``"lin_<number>"``) as SB3 takes it."""
    if isinstance(value, str):
        match = _LINEAR.match(value)
        assert match is not None, value  # validated when the config was built
        return Linear(float(match["value"]))
    return float(value)


# --- field declarations -----------------------------------------------------------------------


def _field(default: Any = dataclasses.MISSING, help: str = "", *, low: float | None = None,
           high: float | None = None, above: float | None = None, factory: Any = None) -> Any:  # fmt: skip
    """A dataclass field with its help text and numeric range (``low <= x <= high``, ``x > above``)."""
    metadata = {"help": help, "low": low, "high": high, "above": above}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


SCHEDULE = "schedule"  # marker in a field's metadata: a number or "lin_<number>"
ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu")
POLICIES = (
    "MlpGruPolicy",
    "MlpLstmPolicy",
    "MlpRnnPolicy",
    "CnnGruPolicy",
    "CnnLstmPolicy",
    "CnnRnnPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmPolicy",
    "MultiInputRnnPolicy",
)


class Section:
    """Base of the config dataclasses: converts and checks every field after construction."""

    # A non-mapping value that stands for the whole section (``normalize: true``), if any.
    @classmethod
    def from_shorthand(cls, value: Any) -> dict[str, Any] | None:
        return None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Any:
        if not isinstance(values, Mapping):
            expanded = cls.from_shorthand(values)
            if expanded is None:
                raise ConfigError(f"expected a mapping with keys {_keys(cls)}, got {_show(values)}")
            values = expanded
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in values:
            if key not in names:
                raise ConfigError(_unknown_key_message(str(key), names), key=str(key))
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f)]  # type: ignore[arg-type]
        if missing:
            raise ConfigError(f"missing required key ({_describe(_hints(cls)[missing[0]])})", key=missing[0])
        return cls(**values)

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            try:
                value = _convert(getattr(self, f.name), hints[f.name], f.metadata)
                _check_range(value, f.metadata)
            except ConfigError as error:
                raise error.under(f.name) from None
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Checks across fields (override)."""

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (validated like any other construction)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values (sections as mappings, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class NetArch(Section):
    """Hidden layers of the actor (pi) and critic (vf) heads after the memory."""

    pi: tuple[int, ...] = _field((64, 64), "actor head layer sizes")
    vf: tuple[int, ...] = _field((64, 64), "critic head layer sizes")

    @classmethod
    def from_shorthand(cls, value: Any) -> dict[str, Any] | None:
        # SB3 >= 1.8: a list gives the actor and the critic the same (separate) layers
        if isinstance(value, (list, tuple)):
            return {"pi": value, "vf": value}
        return None

    def _check(self) -> None:
        for name in ("pi", "vf"):
            if any(size < 1 for size in getattr(self, name)):
                raise ConfigError(f"layer sizes must be positive integers, got {list(getattr(self, name))}", key=name)


@dataclass(frozen=True)
class PolicyConfig(Section):
    """``policy_kwargs``: the memory core and the heads."""

    memory: Literal["gru", "lstm", "rnn"] | None = _field(None, "memory core; null: the one the policy name says")
    hidden_size: int = _field(64, "units per memory layer", low=1)
    num_layers: int = _field(1, "stacked memory layers", low=1)
    critic_memory: Literal["separate", "shared", "none"] = _field(
        "separate", "critic reads its own memory, the actor's, or none"
    )
    net_arch: NetArch = _field(help="head layers: a list, or {pi: [...], vf: [...]}", factory=NetArch)
    activation_fn: Literal[ACTIVATIONS] = _field("tanh", "activation of the head layers")  # type: ignore[valid-type]
    ortho_init: bool = _field(True, "orthogonal init of features extractor and heads (never the memory)")
    log_std_init: float = _field(0.0, "initial log std of Gaussian actions (Box action spaces)")


@dataclass(frozen=True)
class NormalizeConfig(Section):
    """VecNormalize: running mean/std of observations and returns (``normalize: true`` for all)."""

    enabled: bool = _field(False, "wrap the training envs in VecNormalize")
    norm_obs: bool = _field(True, "normalize observations")
    norm_reward: bool = _field(True, "normalize rewards (training only)")
    clip_obs: float = _field(10.0, "clip normalized observations to +-clip_obs", above=0)

    @classmethod
    def from_shorthand(cls, value: Any) -> dict[str, Any] | None:
        return {"enabled": value} if isinstance(value, bool) else None


@dataclass(frozen=True)
class EvalConfig(Section):
    """Evaluation during training (best model) and after it (eval.json)."""

    freq: int = _field(10_000, "evaluate every this many env steps (0: only at the end)", low=0)
    episodes: int = _field(10, "episodes per periodic evaluation", low=1)
    deterministic: bool = _field(True, "greedy actions when evaluating")
    final_episodes: int = _field(20, "episodes of the final evaluation written to eval.json (0: none)", low=0)


@dataclass(frozen=True)
class CheckpointConfig(Section):
    """Periodic checkpoints in ``checkpoints/`` (also written at the end and on Ctrl-C/SIGTERM)."""

    freq: int = _field(10_000, "checkpoint every this many env steps (0: only at the end)", low=0)
    keep: int = _field(5, "checkpoints kept, newest first (0: keep all)", low=0)


@dataclass(frozen=True)
class TrainConfig(Section):
    """Everything a training run depends on. Algorithm fields are SB3 PPO's, same names."""

    env: str = _field(help="Gymnasium env id (recurrent-rl envs lists the pomdp/ suite)")
    env_kwargs: dict[str, Any] = _field(help="keyword arguments for gymnasium.make", factory=dict)
    n_envs: int = _field(8, "parallel envs (DummyVecEnv)", low=1)
    normalize: NormalizeConfig = _field(help="VecNormalize settings, or true/false", factory=NormalizeConfig)
    n_timesteps: int = _field(100_000, "total env steps", low=1)
    seed: int = _field(0, "seed of the model, the envs and the evaluations", low=0)
    description: str = _field("", "free text shown by recurrent-rl presets")
    policy: Literal[POLICIES] = _field("MlpGruPolicy", "policy class")  # type: ignore[valid-type]
    policy_kwargs: PolicyConfig = _field(help="memory core and heads", factory=PolicyConfig)
    learning_rate: float | str = _field(3e-4, "a number or lin_<number> (linear decay to 0)", above=0)
    n_steps: int = _field(128, "steps per env per rollout", low=1)
    batch_size: int = _field(128, "minibatch size in steps (a multiple of sequence_length)", low=1)
    sequence_length: int | None = _field(None, "BPTT chunk length (null: n_steps)", low=1)
    n_epochs: int = _field(10, "passes over each rollout", low=1)
    gamma: float = _field(0.99, "discount factor", low=0, high=1)
    gae_lambda: float = _field(0.95, "GAE lambda", low=0, high=1)
    clip_range: float | str = _field(0.2, "a number or lin_<number> (linear decay to 0)", above=0)
    clip_range_vf: float | None = _field(None, "value clipping (null: none)", above=0)
    normalize_advantage: bool = _field(True, "normalize advantages per minibatch")
    ent_coef: float = _field(0.0, "entropy bonus coefficient", low=0)
    vf_coef: float = _field(0.5, "value loss coefficient", low=0)
    max_grad_norm: float = _field(0.5, "gradient clipping norm", above=0)
    target_kl: float | None = _field(None, "stop the update early past this KL (null: never)", above=0)
    use_sde: bool = _field(False, "generalized state-dependent exploration (Box actions)")
    sde_sample_freq: int = _field(-1, "resample gSDE noise every n steps (-1: per rollout)", low=-1)
    device: str = _field("auto", "torch device: auto, cpu, cuda, cuda:1, ...")
    torch_threads: int = _field(1, "torch CPU threads (1 is fastest for small recurrent nets)", low=1)
    eval: EvalConfig = _field(help="evaluation during and after training", factory=EvalConfig)
    checkpoint: CheckpointConfig = _field(help="periodic checkpoints", factory=CheckpointConfig)

    def _check(self) -> None:
        for name in ("learning_rate", "clip_range"):
            value = getattr(self, name)
            if isinstance(value, str):
                match = _LINEAR.match(value)
                number = _parse_number(match["value"]) if match else None
                if number is None or not number > 0:
                    raise ConfigError(f"expected a number > 0 or lin_<number > 0> (e.g. lin_1e-3), got {value!r}", key=name)
        try:
            check_sequence_sizes(self.n_steps, self.n_envs, self.batch_size, self.sequence_length or self.n_steps)
        except ValueError as error:
            raise ConfigError(f"{error} (keys: n_steps, n_envs, batch_size, sequence_length)") from None

    @property
    def memory(self) -> str:
        """The memory core this config trains (``policy_kwargs.memory`` or the policy's)."""
        if self.policy_kwargs.memory is not None:
            return self.policy_kwargs.memory
        return next(m for m in ("Gru", "Lstm", "Rnn") if m in self.policy).lower()

    def algorithm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`recurrent_rl.RecurrentPPO` (without env, seed, logging)."""
        from torch import nn

        activations = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
                       "gelu": nn.GELU, "silu": nn.SiLU}  # fmt: skip
        pk = self.policy_kwargs
        policy_kwargs: dict[str, Any] = dict(
            hidden_size=pk.hidden_size,
            num_layers=pk.num_layers,
            critic_memory=pk.critic_memory,
            net_arch=dict(pi=list(pk.net_arch.pi), vf=list(pk.net_arch.vf)),
            activation_fn=activations[pk.activation_fn],
            ortho_init=pk.ortho_init,
            log_std_init=pk.log_std_init,
        )
        if pk.memory is not None:
            policy_kwargs["memory"] = pk.memory
        return dict(
            policy=self.policy,
            learning_rate=make_schedule(self.learning_rate),
            n_steps=self.n_steps,
            batch_size=self.batch_size,
            sequence_length=self.sequence_length,
            n_epochs=self.n_epochs,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            clip_range=make_schedule(self.clip_range),
            clip_range_vf=self.clip_range_vf,
            normalize_advantage=self.normalize_advantage,
            ent_coef=self.ent_coef,
            vf_coef=self.vf_coef,
            max_grad_norm=self.max_grad_norm,
            target_kl=self.target_kl,
            use_sde=self.use_sde,
            sde_sample_freq=self.sde_sample_freq,
            device=self.device,
            policy_kwargs=policy_kwargs,
        )


# --- reading, overriding, writing -------------------------------------------------------------


def config_from_dict(values: Mapping[str, Any], overrides: Iterable[str] = (), source: str | None = None,
                     check_env: bool = True) -> TrainConfig:  # fmt: skip
    """Build a :class:`TrainConfig` from a mapping plus ``KEY=VALUE`` overrides (dotted keys)."""
    try:
        values = unwrap_zoo_layout(values)
        values = apply_overrides(values, overrides)
        config = TrainConfig.from_dict(values)
    except ConfigError as error:
        raise error.with_source(source) if source else error from None
    if check_env:
        check_env_id(config.env)
    return config


def load_config(path: str | Path, overrides: Iterable[str] = (), check_env: bool = True) -> TrainConfig:
    """Read a YAML config file (and apply ``KEY=VALUE`` overrides)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    return config_from_dict(parse_yaml(text, str(path)), overrides, source=str(path), check_env=check_env)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """A YAML mapping, or a :class:`ConfigError` saying where the YAML is malformed."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"malformed YAML{where}: {problem}", source=source) from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"expected a YAML mapping of config keys, got {_show(values)}", source=source)
    return values


def unwrap_zoo_layout(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{env_id: {hyperparameters}}`` (rl-baselines3-zoo) -> ``{env: env_id, hyperparameters}``."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if len(values) == 1:
        (key, inner), = values.items()  # fmt: skip
        if isinstance(key, str) and key not in names and isinstance(inner, Mapping) and "env" not in inner:
            return {"env": key, **inner}
    return dict(values)


def apply_overrides(values: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``values`` with each ``KEY=VALUE`` applied; VALUE is read as YAML (``[64, 64]``, ``null``, ``1e-3``)."""
    result = _deep_copy(values)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. n_steps=64), got {override!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"cannot read the value of --set {override!r} as YAML: {error}", key=key) from None
        _set_path(result, key.split("."), value, TrainConfig, key)
    return result


def save_config(config: TrainConfig, path: str | Path, header: str = "") -> None:
    """Write the resolved config as YAML, atomically (see :func:`recurrent_rl.runs.atomic_write_text`)."""
    from recurrent_rl.runs import atomic_write_text

    atomic_write_text(Path(path), config_to_yaml(config, header))


def config_to_yaml(config: TrainConfig, header: str = "") -> str:
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


def config_keys() -> list[str]:
    """One line per config key (dotted), with its type, default and help: for ``--help`` and docs."""
    lines: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            tp, key = hints[f.name], prefix + f.name
            if _is_section(tp):
                walk(tp, key + ".")
                continue
            default = "required" if _required(f) else f"default {_default_text(f)}"
            lines.append(f"{key} ({_describe(tp, f.metadata)}; {default}): {f.metadata.get('help', '')}")

    walk(TrainConfig, "")
    return lines


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` if ``env_id`` is not registered, suggesting close matches."""
    import gymnasium as gym

    import envs  # noqa: F401  registers pomdp/

    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"unknown env id {env_id!r}.{hint} `recurrent-rl envs` lists the pomdp/ suite; any registered "
        "Gymnasium id works.",
        key="env",
    )


# --- conversion helpers -----------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _parse_number(text: str) -> float | None:
    # PyYAML (YAML 1.1) reads 1e-3 and 1e5 as strings; the zoo writes them that way.
    text = text.strip().replace("_", "")
    return float(text) if _NUMBER.match(text) else None


def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default_text(f: dataclasses.Field) -> str:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    plain = _plain(value)
    return "null" if plain is None else yaml.safe_dump(plain, default_flow_style=True).strip().removesuffix("...").strip()


def _keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _unknown_key_message(key: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown key.{hint} Valid keys here: {', '.join(valid)}"


def _describe(tp: Any, metadata: Mapping[str, Any] | None = None) -> str:
    metadata = metadata or {}
    rng = _range_text(metadata)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [a for a in get_args(tp) if a is not type(None)]
        if parts == [float, str]:
            text = f"a number{rng} or lin_<number>"
        else:
            text = " or ".join(_describe(a, metadata) for a in parts)
        return text + (" or null" if type(None) in get_args(tp) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) if a is not None else "null" for a in get_args(tp))
    if tp is bool:
        return "true or false"
    if tp is int:
        return f"an integer{rng}"
    if tp is float:
        return f"a number{rng}"
    if tp is str:
        return "a string"
    if origin is tuple:
        return "a list of integers"
    if origin is dict or tp is dict:
        return "a mapping"
    if _is_section(tp):
        return f"a mapping with keys {_keys(tp)}"
    return str(tp)


def _range_text(metadata: Mapping[str, Any]) -> str:
    low, high, above = metadata.get("low"), metadata.get("high"), metadata.get("above")
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if above is not None:
        return f" > {above}"
    return ""


def _convert(value: Any, tp: Any, metadata: Mapping[str, Any]) -> Any:
    """``value`` as type ``tp``, or a :class:`ConfigError` naming what was expected."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, metadata)
            except ConfigError:
                continue
        raise ConfigError(f"expected {_describe(tp, metadata)}, got {_show(value)}")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"expected {_describe(tp)}, got {_show(value)}.{hint}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _parse_number(value) if isinstance(value, str) else value
        if isinstance(number, float) and not isinstance(value, bool) and math.isfinite(number) and number.is_integer():
            return int(number)  # 1e5 or 100000.0
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _parse_number(value) is not None:
            return _parse_number(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            (item,) = get_args(tp)[:1]
            converted = []
            for index, element in enumerate(value):
                try:
                    converted.append(_convert(element, item, {}))
                except ConfigError as error:
                    raise ConfigError(f"item {index}: {error.message}") from None
            return tuple(converted)
    elif origin is dict or tp is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif _is_section(tp):
        if isinstance(value, tp):
            return value
        return tp.from_dict(value)
    raise ConfigError(f"expected {_describe(tp, metadata)}, got {_show(value)}")


def _check_range(value: Any, metadata: Mapping[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high, above = metadata.get("low"), metadata.get("high"), metadata.get("above")
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and not value > above)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ConfigError(f"expected a number{_range_text(metadata)}, got {value}")


def _set_path(values: dict[str, Any], parts: list[str], value: Any, cls: type, full_key: str) -> None:
    """Set ``values[a][b]...`` = value along the schema ``cls``, expanding shorthands on the way."""
    hints = _hints(cls)
    head = parts[0]
    if head not in hints:
        prefix = full_key[: len(full_key) - len(".".join(parts))]
        raise ConfigError(_unknown_key_message(head, hints), key=prefix + head)
    if len(parts) == 1:
        values[head] = value
        return
    tp = hints[head]
    if tp == dict[str, Any]:  # env_kwargs.some_arg: free-form keys
        inner = values.get(head)
        values[head] = inner = dict(inner) if isinstance(inner, Mapping) else {}
        _set_free(inner, parts[1:], value)
        return
    if not _is_section(tp):
        raise ConfigError(f"'{head}' is not a section: set it with {head}=VALUE", key=full_key)
    inner = values.get(head, {})
    if not isinstance(inner, Mapping):
        expanded = tp.from_shorthand(inner)
        if expanded is None:
            raise ConfigError(f"'{head}' holds {_show(inner)}, not a mapping", key=full_key)
        inner = expanded
    values[head] = inner = dict(inner)
    _set_path(inner, parts[1:], value, tp, full_key)


def _set_free(values: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = values.get(part)
        values[part] = child = dict(child) if isinstance(child, Mapping) else {}
        values = child
    values[parts[-1]] = value


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
