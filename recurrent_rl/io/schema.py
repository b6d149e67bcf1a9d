"""What a received model file must hold: the schema of ``model.json`` and of an ONNX graph's metadata.

A safe copy or an exported graph may come from a stranger, so every field the loaders read is
checked here before it is used: its type, its keys, its range, the shapes of the statistics, the
dtypes. Each failure is one :class:`~recurrent_rl.received.ReceivedFileError` that names the file
and the field (``runs/x/model.json (hyperparameters.n_steps)``), never a ``KeyError`` or
``TypeError`` from deep inside a constructor.

What this module cannot check alone (the sizes in ``policy_kwargs`` against the tensors in the
weights file, and the memory a model will allocate) is done by :mod:`recurrent_rl.io.sizes`
for safe copies and by :class:`recurrent_rl.export.play.OnnxPolicy` against the graph's inputs.

No torch: the ONNX runner imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from recurrent_rl.io.spaces import BOX_DTYPES, MAX_DIMS, space_from_json
from recurrent_rl.received import (
    MAX_LIST,
    ReceivedFileError,
    boolean,
    cut,
    integer,
    mapping,
    number,
    sequence,
    shorten,
    string,
)

MAX_INT64 = (1 << 63) - 1
MAX_SEED = (1 << 32) - 1  # NumPy's seeds
MAX_DEPTH = 16  # nesting of the values in policy_kwargs and the optimizer's settings
MAX_NAME = 300  # a tensor's, an input's or a key's name
SAFE_KEYS = (
    "format",
    "format_version",
    "algorithm",
    "policy",
    "policy_kwargs",
    "hyperparameters",
    "n_envs",
    "num_timesteps",
    "n_updates",
    "observation_space",
    "action_space",
    "weights_sha256",
)
SAFE_OPTIONAL = (
    "vecnormalize",
    "env_id",
    "versions",
    "aliases",
    "optimizer",
    "critic_optimizer",  # RecurrentSAC's critic's and entropy coefficient's optimizers
    "ent_coef_optimizer",
)
ALGORITHMS = ("RecurrentPPO", "MaskableRecurrentPPO", "RecurrentSAC")
SCHEDULE_KEYS = {"linear": ("initial",), "sb3_linear": ("start", "end", "end_fraction")}


# --- model.json -----------------------------------------------------------------------------------


# the algorithm's attributes stored and restored (constructor arguments of RecurrentPPO)
HYPERPARAMETERS = (
    "n_steps",
    "batch_size",
    "n_epochs",
    "gamma",
    "gae_lambda",
    "normalize_advantage",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "use_sde",
    "sde_sample_freq",
    "target_kl",
    "sequence_length",
    "seed",
)
SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")
OPTIONAL_HYPERPARAMETERS = ("state_refresh", "burn_in", "burn_in_gradient")  # absent from older files: defaults
# RecurrentSAC's (constructor arguments; train_freq as [frequency, unit], log_ent_coef the tuned
# coefficient's logarithm, null for a fixed one)
SAC_HYPERPARAMETERS = (
    "buffer_size",
    "learning_starts",
    "batch_size",
    "tau",
    "gamma",
    "gradient_steps",
    "ent_coef",
    "target_update_interval",
    "target_entropy",
    "sequence_length",
    "burn_in",
    "stored_states",
    "seed",
)
SAC_SCHEDULES = ("learning_rate",)


def check_safe_config(config: Any, where: str) -> dict[str, Any]:
    """``config`` (a parsed ``model.json``) if every field has the type and range the writer gives it.

    :param where: the file, for the messages
    """
    config = mapping(config, where, "", SAFE_KEYS, SAFE_OPTIONAL)
    algorithm = string(config["algorithm"], where, "algorithm", choices=list(ALGORITHMS))
    string(config["policy"], where, "policy", limit=MAX_NAME)
    if algorithm == "RecurrentSAC":
        _sac_hyperparameters(config["hyperparameters"], where)
    else:
        _hyperparameters(config["hyperparameters"], where)
    integer(config["n_envs"], where, "n_envs", 1, MAX_INT64)
    integer(config["num_timesteps"], where, "num_timesteps", 0, MAX_INT64)
    integer(config["n_updates"], where, "n_updates", 0, MAX_INT64)
    string(config["weights_sha256"], where, "weights_sha256", limit=64)
    json_value(config["policy_kwargs"], where, "policy_kwargs")
    mapping(config["policy_kwargs"], where, "policy_kwargs", optional=None)
    observation_space = space_from_json(config["observation_space"], f"{where} (observation_space)")
    space_from_json(config["action_space"], f"{where} (action_space)")
    aliases = mapping(config.get("aliases", {}), where, "aliases", optional=None)
    sequence(list(aliases), where, "aliases", MAX_LIST)
    for name, target in aliases.items():
        string(target, where, f"aliases.{cut(name)}", limit=MAX_NAME)
    if config.get("env_id") is not None:
        string(config["env_id"], where, "env_id", limit=MAX_NAME)
    if config.get("versions") is not None:
        mapping(config["versions"], where, "versions", optional=None)
    if config.get("vecnormalize") is not None:
        check_vecnormalize(config["vecnormalize"], observation_space, where)
    for entry in ("optimizer", "critic_optimizer", "ent_coef_optimizer"):
        if config.get(entry) is not None:
            check_optimizer_entry(config[entry], where, entry)
    return config


def _hyperparameters(hyper: Any, where: str) -> None:
    names = (*HYPERPARAMETERS, *SCHEDULES, "stats_window_size")
    optional = OPTIONAL_HYPERPARAMETERS
    hyper = mapping(hyper, where, "hyperparameters", names, optional)
    field = "hyperparameters."
    n_steps = integer(hyper["n_steps"], where, field + "n_steps", 1, MAX_INT64)
    burn_in = integer(hyper.get("burn_in", 0), where, field + "burn_in", 0, n_steps)
    for name in ("state_refresh", "burn_in_gradient"):
        boolean(hyper.get(name, False), where, field + name)
    if hyper.get("burn_in_gradient", False) and not burn_in:
        raise ReceivedFileError(f"{where} (hyperparameters): burn_in_gradient is true with burn_in 0")
    batch_size = integer(hyper["batch_size"], where, field + "batch_size", 1, MAX_INT64)
    sequence_length = integer(hyper["sequence_length"], where, field + "sequence_length", 1, n_steps)
    if n_steps % sequence_length or batch_size % sequence_length:
        raise ReceivedFileError(
            f"{where} (hyperparameters): sequence_length {sequence_length} must divide n_steps {n_steps} and "
            f"batch_size {batch_size}"
        )
    integer(hyper["n_epochs"], where, field + "n_epochs", 1, MAX_INT64)
    integer(hyper["stats_window_size"], where, field + "stats_window_size", 1, MAX_INT64)
    integer(hyper["sde_sample_freq"], where, field + "sde_sample_freq", -1, MAX_INT64)
    for name in ("gamma", "gae_lambda"):
        number(hyper[name], where, field + name, 0.0, 1.0)
    for name in ("ent_coef", "vf_coef"):
        number(hyper[name], where, field + name)
    number(hyper["max_grad_norm"], where, field + "max_grad_norm", 0.0)
    for name in ("normalize_advantage", "use_sde"):
        boolean(hyper[name], where, field + name)
    if hyper["target_kl"] is not None:
        number(hyper["target_kl"], where, field + "target_kl", 0.0)
    if hyper["seed"] is not None:
        integer(hyper["seed"], where, field + "seed", 0, MAX_SEED)
    for name in ("learning_rate", "clip_range", "clip_range_vf"):
        if hyper[name] is None and name == "clip_range_vf":
            continue
        schedule(hyper[name], where, field + name)
        if name == "clip_range_vf" and not isinstance(hyper[name], dict) and hyper[name] <= 0:
            # SB3's PPO asserts it (a constant clip range for the value must be positive)
            raise ReceivedFileError(
                f"{where} ({field}clip_range_vf) must be positive or null, got {shorten(hyper[name])}"
            )


def _sac_hyperparameters(hyper: Any, where: str) -> None:
    """RecurrentSAC's settings (:data:`SAC_HYPERPARAMETERS`)."""
    names = (*SAC_HYPERPARAMETERS, *SAC_SCHEDULES, "train_freq", "stats_window_size", "log_ent_coef")
    hyper = mapping(hyper, where, "hyperparameters", names)
    field = "hyperparameters."
    buffer_size = integer(hyper["buffer_size"], where, field + "buffer_size", 2, MAX_INT64)
    for name in ("learning_starts", "burn_in"):
        integer(hyper[name], where, field + name, 0, MAX_INT64)
    for name in ("batch_size", "target_update_interval", "stats_window_size"):
        integer(hyper[name], where, field + name, 1, MAX_INT64)
    integer(hyper["gradient_steps"], where, field + "gradient_steps", -1, MAX_INT64)
    length = integer(hyper["sequence_length"], where, field + "sequence_length", 1, buffer_size - 1)
    if hyper["burn_in"] >= length:
        raise ReceivedFileError(
            f"{where} (hyperparameters): burn_in {hyper['burn_in']} must be smaller than sequence_length {length}"
        )
    for name in ("tau", "gamma"):
        number(hyper[name], where, field + name, 0.0, 1.0)
    number(hyper["target_entropy"], where, field + "target_entropy")
    if hyper["log_ent_coef"] is not None:
        number(hyper["log_ent_coef"], where, field + "log_ent_coef")
    if isinstance(hyper["ent_coef"], str):
        text = string(hyper["ent_coef"], where, field + "ent_coef", limit=40)
        if text != "auto" and not (text.startswith("auto_") and _positive(text[5:])):
            raise ReceivedFileError(f"{where} ({field}ent_coef): expected a number, auto or auto_<x>, got {cut(text)}")
    else:
        number(hyper["ent_coef"], where, field + "ent_coef", 0.0)
    boolean(hyper["stored_states"], where, field + "stored_states")
    frequency = sequence(hyper["train_freq"], where, field + "train_freq", 2)
    if len(frequency) != 2:
        raise ReceivedFileError(f"{where} ({field}train_freq): expected [frequency, unit], got {shorten(frequency)}")
    integer(frequency[0], where, field + "train_freq[0]", 1, MAX_INT64)
    string(frequency[1], where, field + "train_freq[1]", choices=["step", "episode"])
    if hyper["seed"] is not None:
        integer(hyper["seed"], where, field + "seed", 0, MAX_SEED)
    schedule(hyper["learning_rate"], where, field + "learning_rate")


def _positive(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value > 0 and value < float("inf")


def schedule(value: Any, where: str, field: str) -> None:
    """A learning-rate or clip-range setting: a finite number, or a known schedule of finite numbers."""
    if isinstance(value, dict):
        kind = string(value.get("schedule"), where, f"{field}.schedule", choices=list(SCHEDULE_KEYS))
        mapping(value, where, field, ("schedule", *SCHEDULE_KEYS[kind]))
        for key in SCHEDULE_KEYS[kind]:
            number(value[key], where, f"{field}.{key}")
        return
    number(value, where, field)


def json_value(value: Any, where: str, field: str, depth: int = 0) -> None:
    """Plain JSON data nested at most :data:`MAX_DEPTH` levels, lists of at most
    :data:`~recurrent_rl.received.MAX_LIST` entries, strings of at most a few kilobytes."""
    if depth > MAX_DEPTH:
        raise ReceivedFileError(f"{where} ({field}) nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        for index, item in enumerate(sequence(value, where, field)):
            json_value(item, where, f"{field}[{index}]", depth + 1)
    elif isinstance(value, dict):
        sequence(list(value), where, field)
        for key, item in value.items():
            json_value(item, where, f"{field}.{cut(key)}", depth + 1)
    elif isinstance(value, str):
        string(value, where, field, limit=4096)
    elif isinstance(value, float):
        number(value, where, field)


# --- VecNormalize statistics ------------------------------------------------------------------------


def _array(value: Any, where: str, field: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ReceivedFileError(f"{where} ({field}) must be numbers (nested lists of one shape)") from None
    if array.ndim > MAX_DIMS:
        raise ReceivedFileError(f"{where} ({field}) has {array.ndim} dimensions")
    if not np.isfinite(array).all():
        raise ReceivedFileError(f"{where} ({field}) holds nan or inf: the statistics are damaged")
    return array


def _rms(data: Any, where: str, field: str, shapes: list[tuple[int, ...]] | None) -> None:
    data = mapping(data, where, field, ("mean", "var", "count"))
    mean = _array(data["mean"], where, f"{field}.mean")
    var = _array(data["var"], where, f"{field}.var")
    if (var < 0).any():
        raise ReceivedFileError(f"{where} ({field}.var) holds negative variances: the statistics are damaged")
    number(data["count"], where, f"{field}.count", 0.0)
    if mean.shape != var.shape:
        raise ReceivedFileError(f"{where} ({field}): mean of shape {mean.shape}, var of shape {var.shape}")
    if shapes is not None and mean.shape not in shapes:
        raise ReceivedFileError(
            f"{where} ({field}): statistics of shape {mean.shape} for observations of shape {shapes[0]}"
        )


def _obs_shapes(space: spaces.Space) -> list[tuple[int, ...]] | None:
    """The shapes VecNormalize's statistics may have for ``space`` (channel-last images too)."""
    if not isinstance(space, spaces.Box):
        return None
    shape = tuple(int(s) for s in space.shape)
    return [shape, (shape[1], shape[2], shape[0])] if len(shape) == 3 else [shape]


def check_vecnormalize(data: Any, observation_space: spaces.Space, where: str) -> dict[str, Any]:
    """The ``vecnormalize`` entry of ``model.json``: settings in range, statistics finite with
    non-negative variances and the observations' shapes."""
    field = "vecnormalize"
    keys = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys", "obs_rms")
    data = mapping(data, where, field, (*keys, "ret_rms"))
    for name in ("norm_obs", "norm_reward"):
        boolean(data[name], where, f"{field}.{name}")
    for name in ("clip_obs", "clip_reward", "epsilon"):
        if number(data[name], where, f"{field}.{name}", 0.0) <= 0:
            raise ReceivedFileError(f"{where} ({field}.{name}) must be positive, got {shorten(data[name])}")
    number(data["gamma"], where, f"{field}.gamma", 0.0, 1.0)
    _rms(data["ret_rms"], where, f"{field}.ret_rms", [()])
    obs_rms = data["obs_rms"]
    if not data["norm_obs"]:  # rewards only: no observation statistics are kept
        if obs_rms is not None:
            raise ReceivedFileError(f"{where} ({field}.obs_rms) must be null when norm_obs is false")
        return data
    if isinstance(observation_space, spaces.Dict):
        obs_rms = mapping(obs_rms, where, f"{field}.obs_rms", optional=None)
        keys_given = data["norm_obs_keys"]
        if keys_given is not None:
            for index, key in enumerate(sequence(keys_given, where, f"{field}.norm_obs_keys")):
                string(key, where, f"{field}.norm_obs_keys[{index}]", choices=list(observation_space.spaces))
        for key, stats in obs_rms.items():
            if key not in observation_space.spaces:
                raise ReceivedFileError(f"{where} ({field}.obs_rms) has statistics of {shorten(key)}, not an entry")
            _rms(stats, where, f"{field}.obs_rms.{cut(key)}", _obs_shapes(observation_space[key]))
        missing = [k for k in (keys_given or []) if k not in obs_rms]
        if missing:
            raise ReceivedFileError(f"{where} ({field}.obs_rms) lacks the statistics of {shorten(missing[0])}")
    else:
        if data["norm_obs_keys"] is not None:
            raise ReceivedFileError(f"{where} ({field}.norm_obs_keys) must be null for a single observation")
        _rms(obs_rms, where, f"{field}.obs_rms", _obs_shapes(observation_space))
    return data


# --- the optimizer's entry --------------------------------------------------------------------------


def _plain(value: Any, where: str, field: str) -> None:
    """A setting of an optimizer: null, a bool, a finite number, a short string or a tuple of numbers."""
    if isinstance(value, dict):
        items = mapping(value, where, field, ("__tuple__",))["__tuple__"]
        for index, item in enumerate(sequence(items, where, field, limit=16)):
            number(item, where, f"{field}[{index}]")
    elif isinstance(value, str):
        string(value, where, field, limit=100)
    elif value is not None and not isinstance(value, bool):
        number(value, where, field)


def check_optimizer_entry(data: Any, where: str, field: str = "optimizer") -> dict[str, Any]:
    """The ``optimizer`` entry of ``model.json`` (or ``field``, RecurrentSAC's others): a class name,
    parameter groups of plain settings (no classes) with distinct parameter indices, plain
    per-parameter values and a SHA-256."""
    data = mapping(data, where, field, ("class", "param_groups", "state_values", "sha256"))
    string(data["class"], where, f"{field}.class", limit=MAX_NAME)
    string(data["sha256"], where, f"{field}.sha256", limit=64)
    seen: set[int] = set()
    for index, group in enumerate(sequence(data["param_groups"], where, f"{field}.param_groups", limit=64)):
        at = f"{field}.param_groups[{index}]"
        group = mapping(group, where, at, ("params",), optional=None)
        for position, param in enumerate(sequence(group["params"], where, f"{at}.params")):
            integer(param, where, f"{at}.params[{position}]", 0, MAX_LIST)
            if param in seen:
                raise ReceivedFileError(f"{where} ({at}.params) names the parameter {param} twice")
            seen.add(param)
        if "lr" in group:  # finite; a linear schedule run past its end leaves it slightly below 0
            number(group["lr"], where, f"{at}.lr")
        for key, value in group.items():
            if key != "params":
                _plain(value, where, f"{at}.{cut(key)}")
    values = mapping(data["state_values"], where, f"{field}.state_values", optional=None)
    for number_text, entries in values.items():
        at = f"{field}.state_values.{cut(number_text)}"
        if not number_text.isdigit() or int(number_text) not in seen:
            raise ReceivedFileError(f"{where} ({at}) is not the index of a parameter of the groups")
        for key, value in mapping(entries, where, at, optional=None).items():
            _plain(value, where, f"{at}.{cut(key)}")
    return data


# --- an ONNX graph's metadata -------------------------------------------------------------------------


def _dims(value: Any, where: str, field: str, batch_at: int) -> list[Any]:
    """A shape of the metadata: integers, with ``"batch"`` at index ``batch_at``."""
    dims = sequence(value, where, field, limit=MAX_DIMS)
    if len(dims) <= batch_at or dims[batch_at] != "batch":
        raise ReceivedFileError(f"{where} ({field}) must have 'batch' at position {batch_at}, got {shorten(dims)}")
    for index, dim in enumerate(dims):
        if index != batch_at:
            integer(dim, where, f"{field}[{index}]", 0, MAX_INT64)
    return dims


def check_onnx_metadata(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``recurrent_rl`` metadata of an exported graph (format and version already checked):
    the inputs, states and outputs the runner reads, with names, dtypes and shapes, the action
    space and the env id (only checked to be a string here; see
    :func:`recurrent_rl.received.env_id_from_file` for whether it is used)."""
    json_value(meta, where, "metadata")
    required = ("format", "format_version", "obs", "states", "outputs", "action_space")
    meta = mapping(meta, where, "metadata", required, optional=None)
    if meta.get("env_id") is not None:
        string(meta["env_id"], where, "metadata env_id", limit=MAX_NAME)
    space_from_json(meta["action_space"], f"{where} (metadata action_space)")
    names: set[str] = set()
    for index, entry in enumerate(sequence(meta["obs"], where, "metadata obs", limit=1024)):
        at = f"metadata obs[{index}]"
        entry = mapping(entry, where, at, ("name", "key", "dtype", "shape"))
        names.add(string(entry["name"], where, f"{at}.name", limit=MAX_NAME))
        if entry["key"] is not None:
            string(entry["key"], where, f"{at}.key", limit=MAX_NAME)
        string(entry["dtype"], where, f"{at}.dtype", choices=BOX_DTYPES)
        _dims(entry["shape"], where, f"{at}.shape", 0)
    if not meta["obs"]:
        raise ReceivedFileError(f"{where} (metadata obs) lists no observation input")
    for index, entry in enumerate(sequence(meta["states"], where, "metadata states", limit=256)):
        at = f"metadata states[{index}]"
        entry = mapping(entry, where, at, ("name", "dtype", "shape"), optional=None)
        names.add(string(entry["name"], where, f"{at}.name", limit=MAX_NAME))
        string(entry["dtype"], where, f"{at}.dtype", choices=["float32"])
        _dims(entry["shape"], where, f"{at}.shape", 1)
    if len(names) != len(meta["obs"]) + len(meta["states"]) or "episode_start" in names:
        raise ReceivedFileError(f"{where} (metadata): two inputs have the same name")
    state_names = {entry["name"] for entry in meta["states"]}
    outputs = sequence(meta["outputs"], where, "metadata outputs", limit=1024)
    for index, entry in enumerate(outputs):
        at = f"metadata outputs[{index}]"
        entry = mapping(entry, where, at, ("name",), optional=None)
        string(entry["name"], where, f"{at}.name", limit=MAX_NAME)
        if "state" in entry and string(entry["state"], where, f"{at}.state", limit=MAX_NAME) not in state_names:
            raise ReceivedFileError(f"{where} ({at}.state) names {shorten(entry['state'])}, not a state input")
    if "action" not in {entry["name"] for entry in outputs}:
        raise ReceivedFileError(f"{where} (metadata outputs) lacks the 'action' output")
    fed = {entry["state"] for entry in outputs if "state" in entry}
    if fed != state_names:
        raise ReceivedFileError(f"{where} (metadata outputs): not every state input has its next_state output")
    return meta
