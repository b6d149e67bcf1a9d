"""Search spaces for ``recurrent-rl tune``: one per memory type, overridable from a YAML file.

A space maps parameter names to one of:

- a range ``{low: 1e-4, high: 3e-3, log: true}`` (integers when both ends are integers; ``step`` optional),
- a list of choices ``[32, 64, 128]``,
- a single value (``0.0``, ``null``): fixed, not searched.

The names are the tuned config keys (``learning_rate``, ``n_steps``, ``n_epochs``, ``gamma``,
``gae_lambda``, ``ent_coef``, ``clip_range``, ``sequence_length``, ``target_kl``; ``hidden_size``,
``num_layers``, ``gate_bias`` under ``policy_kwargs``) and ``minibatches``, the number of
minibatches per epoch: ``batch_size = n_steps * n_envs / minibatches``. RecurrentPPO cuts each
env's rollout into whole chunks of ``sequence_length`` steps and fills fixed-size minibatches with
whole chunks (:func:`recurrent_rl.sequences.check_sequence_sizes`), so ``n_steps``,
``minibatches`` and ``sequence_length`` are lists of choices, a ``sequence_length`` above
``n_steps`` (or ``null``) means ``n_steps``, and :func:`check_space` rejects a space in which any
combination of them does not divide, before a trial runs.

A learning rate or clip range whose preset value is a linear schedule (``lin_1e-3``) stays one:
the search picks its initial value.

Reading a space loads neither optuna nor torch.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recurrent_rl.errors import UserInputError
from recurrent_rl.received import shorten

# parameter name -> dotted config key (minibatches sets batch_size)
CONFIG_KEYS = {
    "learning_rate": "learning_rate",
    "n_steps": "n_steps",
    "minibatches": "batch_size",
    "n_epochs": "n_epochs",
    "gamma": "gamma",
    "gae_lambda": "gae_lambda",
    "ent_coef": "ent_coef",
    "clip_range": "clip_range",
    "sequence_length": "sequence_length",
    "target_kl": "target_kl",
    "hidden_size": "policy_kwargs.hidden_size",
    "num_layers": "policy_kwargs.num_layers",
    "gate_bias": "policy_kwargs.gate_bias",
}
CHOICES_ONLY = ("n_steps", "minibatches", "sequence_length")  # their combinations must divide
MAX_CHOICES = 100  # per parameter: check_space tries every combination of three of them


class SpaceError(UserInputError):
    """A search space that cannot be searched (unknown parameter, empty range, sizes that do not divide)."""


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) parameter."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    value: Any = None  # the fixed value, when neither a range nor choices
    default: bool = False  # from the memory type's default space (not the user's file): fit_space may narrow it

    @property
    def fixed(self) -> bool:
        return self.choices is None and self.low is None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def values(self) -> tuple[Any, ...]:
        """The values a choice or fixed parameter can take."""
        return self.choices if self.choices is not None else (self.value,)

    def suggest(self, trial: Any) -> Any:
        """The value for this trial (an ``optuna.Trial``)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.low is None:
            return self.value
        assert self.high is not None
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)

    def to_yaml(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        if self.low is None:
            return self.value
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _default_space(memory: str) -> dict[str, Any]:
    space: dict[str, Any] = {
        "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        "n_steps": [32, 64, 128, 256],
        "minibatches": [1, 2, 4, 8],
        "n_epochs": {"low": 3, "high": 20},
        "gamma": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999],
        "gae_lambda": [0.8, 0.9, 0.95, 0.98, 1.0],
        "ent_coef": {"low": 1e-8, "high": 0.1, "log": True},
        "clip_range": [0.1, 0.2, 0.3],
        "sequence_length": [16, 32, 64, None],
        "hidden_size": [32, 64, 128, 256],
        "num_layers": [1, 2],
        # GRU update-gate / LSTM forget-gate bias: longer memory at the start
        "gate_bias": {"low": 0.0, "high": 3.0},
    }
    if memory == "rnn":
        del space["gate_bias"]  # the Elman RNN has no gates
    if memory == "ffm":
        del space["gate_bias"]  # no gate keeps its state: its decays are learned
    if memory == "transformer":
        # the attention's gates need gated=True; its cost grows with the window, not the depth
        del space["gate_bias"]
        space["hidden_size"] = [64, 128]
    return space


MEMORY_SPACES = {
    memory: _default_space(memory) for memory in ("gru", "lstm", "rnn", "mingru", "minlstm", "transformer", "ffm")
}


def parse_param(name: str, spec: Any, source: str = "") -> Param:
    where = f"{source}: " if source else ""
    if name not in CONFIG_KEYS:
        hint = " (batch_size is set through minibatches: batch_size = n_steps * n_envs / minibatches)"
        raise SpaceError(
            f"{where}unknown search parameter {shorten(name)}; the parameters are {', '.join(CONFIG_KEYS)}"
            + (hint if name == "batch_size" else "")
        )
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"low", "high", "log", "step"}
        if unknown or "low" not in spec or "high" not in spec:
            raise SpaceError(
                f"{where}{name}: a range is {{low: L, high: H}} with optional log: true and step: S, got "
                f"{shorten(dict(spec))}"
            )
        low, high, step = (_number(spec.get(key)) for key in ("low", "high", "step"))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            raise SpaceError(
                f"{where}{name}: low and high must be finite numbers, got {shorten(low)} and {shorten(high)}"
            )
        if not low < high:
            raise SpaceError(f"{where}{name}: empty range, low {low} is not below high {high}")
        if step is not None and (
            isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0
        ):
            raise SpaceError(f"{where}{name}: step must be a number > 0, got {shorten(step)}")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{where}{name}: log must be true or false, got {shorten(log)}")
        if log and low <= 0:
            raise SpaceError(f"{where}{name}: a log range needs low > 0, got {low}")
        if name in CHOICES_ONLY:
            raise SpaceError(
                f"{where}{name}: give a list of choices (its combinations with "
                f"{', '.join(n for n in CHOICES_ONLY if n != name)} are checked to divide)"
            )
        return Param(name, low=low, high=high, log=log, step=step)
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SpaceError(f"{where}{name}: empty list of choices")
        if len(spec) > MAX_CHOICES:
            raise SpaceError(f"{where}{name}: {len(spec)} choices, more than the {MAX_CHOICES} a search takes")
        return Param(name, choices=tuple(_number(choice) for choice in spec))
    return Param(name, value=_number(spec))


def _number(value: Any) -> Any:
    """A string that spells a number is that number: PyYAML (YAML 1.1) reads ``1e-4`` as a string."""
    if isinstance(value, str):
        from recurrent_rl.config.schema import parse_number

        number = parse_number(value)
        if number is not None:
            return int(number) if number.is_integer() and value.strip().lstrip("+-").isdigit() else number
    return value


def load_space(memory: str, path: str | Path | None = None) -> dict[str, Param]:
    """The space of ``memory``, with the entries of the YAML file ``path`` replacing its own."""
    specs = dict(MEMORY_SPACES.get(memory, MEMORY_SPACES["gru"]))
    source = ""
    if path is not None:
        import yaml

        from recurrent_rl.received import load_yaml, read_text

        source = str(path)
        try:
            text = read_text(path, "--space")
        except OSError as error:
            raise SpaceError(f"--space {path}: cannot read it ({error.strerror or error})") from None
        try:
            data = load_yaml(text, f"--space {path}")
        except yaml.YAMLError as error:
            from recurrent_rl.config.schema import yaml_problem

            raise SpaceError(f"--space {path}: malformed YAML{yaml_problem(error)}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpaceError(f"--space {path}: expected a mapping of parameter names, got {type(data).__name__}")
        specs.update(data)
    else:
        data = {}
    space = {name: parse_param(str(name), spec, source) for name, spec in specs.items()}
    return {name: p if name in data else dataclasses.replace(p, default=True) for name, p in space.items()}


def fit_space(space: Mapping[str, Param], base: Mapping[str, Any]) -> dict[str, Param]:
    """``space`` with the default choices of minibatches and sequence_length that cannot fit ``base`` removed.

    The default space is written for 8 envs; with fewer, its smallest minibatches would be shorter than
    its longest chunks. A choice is kept when it fits with every choice of the others; a user's
    own entries are never changed (:func:`check_space` reports them).
    """
    fitted = dict(space)
    for name in ("minibatches", "sequence_length"):
        param = fitted.get(name)
        if param is None or not param.default or param.choices is None:
            continue
        keep = []
        for choice in param.choices:
            try:
                check_space({**fitted, name: dataclasses.replace(param, choices=(choice,))}, base)
            except SpaceError:
                continue
            keep.append(choice)
        if keep:
            fitted[name] = dataclasses.replace(param, choices=tuple(keep))
    return fitted


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The config mapping ``base`` (a :meth:`TrainConfig.to_dict`) with the sampled ``params`` set.

    ``minibatches`` becomes ``batch_size``; a ``sequence_length`` of null or above ``n_steps``
    becomes null (the whole rollout); schedules stay schedules.
    """
    values: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    n_envs = int(values["n_envs"])
    old_minibatches = max(1, int(values["n_steps"]) * n_envs // int(values["batch_size"]))
    for name, value in params.items():
        if name == "minibatches":
            continue
        key = CONFIG_KEYS[name]
        if name in ("learning_rate", "clip_range") and isinstance(values.get(name), str):
            value = f"lin_{value:g}"
        head, _, rest = key.partition(".")
        if rest:
            values[head] = {**values[head], rest: value}
        else:
            values[key] = value
    n_steps = int(values["n_steps"])
    minibatches = int(params.get("minibatches", old_minibatches))
    values["batch_size"] = n_steps * n_envs // minibatches
    seq = values.get("sequence_length")
    if seq is not None and int(seq) >= n_steps:
        values["sequence_length"] = None
    return values


def check_space(space: Mapping[str, Param], base: Mapping[str, Any]) -> None:
    """A :class:`SpaceError` unless every combination of n_steps, minibatches and sequence_length fits RecurrentPPO."""
    from recurrent_rl.sequences import check_sequence_sizes

    n_envs = int(base["n_envs"])
    choices = {name: space[name].values() for name in CHOICES_ONLY if name in space}
    names = list(choices)
    for combo in itertools.product(*(choices[n] for n in names)):
        params = dict(zip(names, combo))
        values = apply_params(base, params)
        n_steps, batch = int(values["n_steps"]), int(values["batch_size"])
        seq = values["sequence_length"] or n_steps
        minibatches = params.get("minibatches")
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        if minibatches is not None and (n_steps * n_envs) % int(minibatches):
            raise SpaceError(
                f"search space: {shown} with n_envs={n_envs}: n_steps * n_envs = {n_steps * n_envs} "
                f"does not split into {minibatches} minibatches; drop that choice"
            )
        try:
            check_sequence_sizes(n_steps, n_envs, batch, int(seq))
        except ValueError as error:
            raise SpaceError(
                f"search space: {shown} with n_envs={n_envs} (batch_size {batch}) does not fit: "
                f"{error}; drop or change one of these choices"
            ) from None
