"""A model format that never unpickles: ``model.safetensors`` (weights) + ``model.json`` (plain data).

SB3's ``model.zip`` and VecNormalize's ``vecnormalize.pkl`` are pickles in part or whole: opening
one that a stranger sent runs whatever code it was crafted to run. The safe copy holds only
tensors and JSON:

- ``<prefix>.safetensors``: the policy's ``state_dict`` (safetensors, which stores raw tensor
  bytes and a JSON header); a tensor that several modules share (a shared features extractor)
  is stored once and its other names are listed in the JSON as aliases;
- ``<prefix>.json``: what rebuilds the model around the weights: the policy class (one of the
  aliases, ``MlpGruPolicy`` ...), ``policy_kwargs`` as JSON (classes as ``"module:qualname"``
  strings, accepted only from torch.nn, torch.optim, SB3 and recurrent_rl, and only classes of
  modules or optimizers), the hyperparameters that acting and further training use, the spaces
  (:mod:`recurrent_rl.io.spaces`), the VecNormalize statistics, the step counter, the versions
  that wrote it and the SHA-256 of the weights file (so a damaged or mismatched pair is refused).

:func:`load_safe` rebuilds a :class:`~recurrent_rl.RecurrentPPO` from them with
``RecurrentPPO``'s own constructor and ``load_state_dict``: no ``pickle``, ``torch.load`` or
SB3 ``load`` is ever called.

The optimizer's state is stored on request (``save_safe(..., optimizer=True)``, as every checkpoint
of a run folder does): ``<prefix>.optimizer.safetensors`` holds its tensors (Adam's moments and
step counters) and the ``optimizer`` entry of the JSON its parameter groups and the file's SHA-256.
``load_safe(..., optimizer=True)`` restores it, so ``recurrent-rl train --resume`` continues from a
checkpoint without unpickling anything. Not stored: a learning-rate or clip-range schedule that is
an arbitrary Python function (its value at the time of saving is stored instead; the ``lin_<x>``
schedules of the configs and SB3's schedule classes are stored as such).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch as th

from recurrent_rl.io.optimizer import check_optimizer, optimizer_from_safe, optimizer_to_safe
from recurrent_rl.io.schema import (
    HYPERPARAMETERS,
    OPTIONAL_HYPERPARAMETERS,
    SAC_HYPERPARAMETERS,
    SAC_SCHEDULES,
    SCHEDULES,
    check_safe_config,
)
from recurrent_rl.io.spaces import describe, space_from_json, space_to_json
from recurrent_rl.io.values import (
    SafeFormatError,
    as_safe_error,
    check_finite,
    custom_classes_map,
    from_json,
    load_tensors,
    schedule_to_json,
    set_rms,
    sha256,
    to_json,
    vecnormalize_to_json,
)
from recurrent_rl.received import MAX_TEXT_BYTES, ReceivedFileError, check_memory, load_json, read_text, shorten
from recurrent_rl.versions import package_versions

FORMAT = "recurrent_rl.safe_model"
FORMAT_VERSION = 1
WEIGHTS = ".safetensors"
CONFIG = ".json"
OPTIMIZER = ".optimizer.safetensors"  # the optimizer's state, beside a checkpoint's weights
DEFAULT_NAME = "model"  # a folder's safe copy: model.safetensors + model.json
# the algorithms the format stores: the PPO family shares its policies and hyperparameters
PPO_FAMILY = ("RecurrentPPO", "MaskableRecurrentPPO")
# RecurrentSAC's optimizers beyond the actor's (``optimizer``): the JSON entry and file of each
SAC_OPTIMIZERS = ("critic_optimizer", "ent_coef_optimizer")
JSON_BYTES_PER_BYTE = 32  # Python objects a parsed JSON text takes, per byte of text (at most, about)


# --- paths -------------------------------------------------------------------------------------------


def safe_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, config) for a folder (``model.safetensors``, ``model.json`` inside it; an existing
    folder or a path ending in ``/``) or a prefix (``runs/x/best_model``, or either file's own name,
    or ``model.zip`` for the safe copy next to it)."""
    folder = str(path).endswith(("/", os.sep))  # "runs/x/": a folder, existing or not
    path = Path(path)
    if path.is_dir() or folder:
        path = path / DEFAULT_NAME
    elif path.suffix in (WEIGHTS, CONFIG, ".zip"):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS), path.with_name(path.name + CONFIG)


def optimizer_path(path: str | Path, name: str = "optimizer") -> Path:
    """``<prefix>.optimizer.safetensors``: the optimizer state written with ``save_safe(..., optimizer=True)``
    (``name``: RecurrentSAC's others, ``<prefix>.critic_optimizer.safetensors`` ...)."""
    weights, _ = safe_paths(path)
    return weights.with_name(weights.name.removesuffix(WEIGHTS) + OPTIMIZER.replace("optimizer", name))


def model_optimizers(model: Any) -> dict[str, Any]:
    """The optimizers a safe copy stores, by JSON entry: ``optimizer`` (the policy's; RecurrentSAC's
    actor's), and RecurrentSAC's ``critic_optimizer`` and ``ent_coef_optimizer`` (tuned coefficient only)."""
    policy = model.policy
    if not hasattr(policy, "critic_target"):
        return {"optimizer": policy.optimizer}
    optimizers = {"optimizer": policy.actor.optimizer, "critic_optimizer": policy.critic.optimizer}
    if getattr(model, "ent_coef_optimizer", None) is not None:
        optimizers["ent_coef_optimizer"] = model.ent_coef_optimizer
    return optimizers


def has_safe_copy(path: str | Path) -> bool:
    """Whether both files of a safe copy exist for ``path`` (a folder, prefix, or ``model.zip``
    whose safe copy lies next to it); a JSON that waits in its leftover folder because a save was
    killed between its two renames counts (:func:`read_safe_config` reads it there)."""
    weights, config = safe_paths(path)
    if not weights.is_file():
        return False
    return config.is_file() or _matching_pending_config(weights, config) is not None


def env_id_of(model: Any) -> str | None:
    """The Gymnasium id of a model's (first) env, if it has one (recorded in the exported files)."""
    env = getattr(model, "env", None)
    if env is None:
        return None
    try:
        spec = env.get_attr("spec", [0])[0]
    except Exception:  # a VecEnv without Gymnasium envs inside
        return None
    return getattr(spec, "id", None)


# --- save ------------------------------------------------------------------------------------------------


def _policy_name(policy: Any) -> str:
    from recurrent_rl.nets.policies import POLICY_ALIASES, RecurrentActorCriticPolicy

    if type(policy).__name__ == "RecurrentSACPolicy" and hasattr(policy, "critic_target"):
        return "MlpPolicy"  # RecurrentSAC's one alias (sac/ builds on this floor: no import of it here)
    for name, cls in POLICY_ALIASES.items():
        if type(policy) is cls:
            return name
    if type(policy) is RecurrentActorCriticPolicy:
        return "RecurrentActorCriticPolicy"
    raise SafeFormatError(
        f"the safe format stores policies of the classes {sorted(POLICY_ALIASES)}; this model's policy is a "
        f"{type(policy).__module__}.{type(policy).__qualname__}. Share it as SB3's zip (model.save)"
    )


def _unique_tensors(state_dict: dict[str, th.Tensor]) -> tuple[dict[str, th.Tensor], dict[str, str]]:
    """(tensors stored once each, alias name -> stored name) for tensors that share storage."""
    stored: dict[str, th.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
        )
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        stored[name] = tensor.cpu().contiguous().clone()  # a private contiguous copy (safetensors needs one per name)
    return stored, aliases


def save_safe(
    model: Any,
    directory_or_prefix: str | Path,
    vecnormalize: Any = None,
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
    env_id: str | None = None,
) -> tuple[Path, Path]:
    """Write the safe copy of ``model``: ``<prefix>.safetensors`` and ``<prefix>.json``.

    :param directory_or_prefix: a folder (then ``model.safetensors`` and ``model.json`` inside it)
        or a prefix (``runs/x/best_model`` writes ``best_model.safetensors`` and ``best_model.json``)
    :param vecnormalize: the VecNormalize whose statistics to store (or the ``vecnormalize``
        entry of another safe copy). None: the model's own VecNormalize env, if any; False: none
    :param custom_classes: classes outside the allow-list that ``policy_kwargs`` may name (your own
        features extractor); the loader must be given them too
    :param optimizer: also write the optimizer's state (``<prefix>.optimizer.safetensors``), so that
        training continues from the copy as from SB3's zip (``load_safe(..., optimizer=True)``)
    :param env_id: the env id to record (None: the id of the model's env, when it has one)
    :returns: (weights, config) paths; each file is written to a temporary file and renamed into
        place, the config last, since it holds the SHA-256 of the others
    """
    from safetensors.torch import save_file

    from recurrent_rl import __version__
    from recurrent_rl.atomic import atomic_path

    custom = custom_classes_map(custom_classes)
    policy = model.policy
    if vecnormalize is None:
        vecnormalize = model.get_vec_normalize_env()
    elif vecnormalize is False:
        vecnormalize = None
    weights_path, config_path = safe_paths(directory_or_prefix)
    algorithm = type(model).__name__
    if algorithm not in (*PPO_FAMILY, "RecurrentSAC"):
        raise SafeFormatError(f"save_safe stores {', '.join(PPO_FAMILY)} and RecurrentSAC models, got a {algorithm}")
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algorithm": algorithm,
        "policy": _policy_name(policy),
        "policy_kwargs": to_json(dict(model.policy_kwargs), "policy_kwargs", custom),
        "hyperparameters": _hyperparameters_to_json(model),
        "n_envs": int(model.n_envs),
        "num_timesteps": int(model.num_timesteps),
        "n_updates": int(getattr(model, "_n_updates", 0)),
        "observation_space": space_to_json(model.observation_space),
        "action_space": space_to_json(model.action_space),
        "vecnormalize": None
        if vecnormalize is None
        else dict(vecnormalize)
        if isinstance(vecnormalize, dict)
        else vecnormalize_to_json(vecnormalize),
        "env_id": env_id if env_id is not None else env_id_of(model),
        "versions": {**package_versions("safetensors"), "recurrent_rl": __version__},
    }
    tensors, aliases = _unique_tensors(policy.state_dict())
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(th.isfinite(tensor).all()):
            raise SafeFormatError(f"the policy's weight {name} holds nan or inf: no safe copy written (it cannot act)")
    config["aliases"] = aliases
    config_path.parent.mkdir(parents=True, exist_ok=True)
    if optimizer:
        for entry, state in model_optimizers(model).items():
            optimizer_tensors, config[entry] = optimizer_to_safe(state)
            with atomic_path(optimizer_path(directory_or_prefix, entry)) as tmp:
                save_file(optimizer_tensors, str(tmp), metadata={"format": "pt", "recurrent_rl": FORMAT})
                config[entry]["sha256"] = sha256(tmp)
    # The pair cannot be renamed into place at once. The JSON is written in full first, then the
    # weights are renamed, then the JSON: a kill between the two renames leaves the new JSON in its
    # leftover folder, where read_safe_config finds it (and runs.folders.remove_leftovers puts it
    # in place), so both files under their final names always load, the old pair or the new one.
    pending: Path | None = None
    try:
        with atomic_path(weights_path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "recurrent_rl": FORMAT})
            config["weights_sha256"] = sha256(tmp)
            try:
                text = json.dumps(config, indent=1, allow_nan=False)
            except ValueError as error:  # nan in the VecNormalize statistics
                raise SafeFormatError(f"the model's data holds a value JSON cannot store: {error}") from None
            pending = _write_pending(config_path, text + "\n")
        os.replace(pending, config_path)
    finally:
        if pending is not None:
            try:  # interrupted (Ctrl-C) after the weights were renamed: the JSON follows them
                if pending.exists() and sha256(weights_path) == config["weights_sha256"]:
                    os.replace(pending, config_path)
            finally:
                shutil.rmtree(pending.parent, ignore_errors=True)
    return weights_path, config_path


def _hyperparameters_to_json(model: Any) -> dict[str, Any]:
    """The algorithm's settings that rebuild it (:data:`HYPERPARAMETERS` or :data:`SAC_HYPERPARAMETERS`)."""
    sac = type(model).__name__ == "RecurrentSAC"
    names, schedules = (
        (SAC_HYPERPARAMETERS, SAC_SCHEDULES) if sac else (HYPERPARAMETERS + OPTIONAL_HYPERPARAMETERS, SCHEDULES)
    )
    hyper = {
        **{name: to_json(getattr(model, name), name) for name in names},
        **{name: schedule_to_json(getattr(model, name), name, model) for name in schedules},
        "stats_window_size": int(model._stats_window_size),
    }
    if sac:
        frequency = model.train_freq
        hyper["train_freq"] = [int(frequency.frequency), str(frequency.unit.value)]
        hyper["target_entropy"] = float(model.target_entropy)
        log_ent_coef = getattr(model, "log_ent_coef", None)
        hyper["log_ent_coef"] = None if log_ent_coef is None else float(log_ent_coef.detach().cpu().reshape(-1)[0])
    return hyper


def _write_pending(config_path: Path, text: str) -> Path:
    """``text`` in ``.<name>.<random>.tmp/<name>`` beside ``config_path`` (synced; created with the
    usual mode, 0o666 less the umask)."""
    from recurrent_rl.atomic import fsync

    folder = Path(tempfile.mkdtemp(prefix=f".{config_path.name}.", suffix=".tmp", dir=config_path.parent))
    path = folder / config_path.name
    path.write_text(text, encoding="utf-8")
    fsync(path)
    return path


def _pending_configs(config_path: Path) -> list[Path]:
    return sorted(config_path.parent.glob(f".{glob.escape(config_path.name)}.*.tmp/{glob.escape(config_path.name)}"))


def _matching_pending_config(weights_path: Path, config_path: Path) -> Path | None:
    """The JSON that a kill left in its leftover folder and that belongs to ``weights_path``, if any."""
    pending = _pending_configs(config_path)
    if not pending:
        return None
    digest = sha256(weights_path)
    for path in pending:
        try:
            limit = MAX_TEXT_BYTES + weights_path.stat().st_size
            if load_json(read_text(path, "model.json", limit), str(path)).get("weights_sha256") == digest:
                return path
        except (OSError, ReceivedFileError, AttributeError):
            continue
    return None


def complete_pending_config(path: str | Path) -> bool:
    """Put in place the JSON of a safe copy whose weights were renamed into place but whose JSON
    was not (a kill between the two renames of :func:`save_safe`); True when it did."""
    weights_path, config_path = safe_paths(path)
    if not weights_path.is_file():
        return False
    pending = _matching_pending_config(weights_path, config_path)
    if pending is None:
        return False
    os.replace(pending, config_path)
    return True


# --- load ------------------------------------------------------------------------------------------------


def read_safe_config(path: str | Path) -> dict[str, Any]:
    """The checked ``model.json`` of a safe copy: its format and version, every field's type and
    range (:func:`recurrent_rl.io.schema.check_safe_config`), and that its weights file is the
    one it was written with.

    A copy whose weights were renamed into place by a save that was killed before it renamed the
    JSON (see :func:`save_safe`) is read with the JSON that waits in its leftover folder, whether
    an older ``model.json`` exists or none does yet: nothing is moved (``--resume`` puts it in place).
    """
    weights_path, config_path = safe_paths(path)
    with as_safe_error():
        if not weights_path.is_file():
            raise SafeFormatError(
                f"the safe copy {weights_path} does not exist (a safe copy is {weights_path.name} and "
                f"{config_path.name} side by side)"
            )
        config = _parse_config(config_path, weights_path) if config_path.is_file() else None
        if config is not None and sha256(weights_path) == config["weights_sha256"]:
            return config
        pending = _matching_pending_config(weights_path, config_path)
        if pending is not None:  # killed between the two renames of save_safe: its JSON waits there
            return _parse_config(pending, weights_path)
        if config is None:
            raise SafeFormatError(
                f"the safe copy {config_path} does not exist (a safe copy is {weights_path.name} and "
                f"{config_path.name} side by side)"
            )
        raise SafeFormatError(
            f"{weights_path} is not the weights file {config_path.name} was written with (damaged, truncated, or "
            "replaced): refused. Copy both files of the safe copy together"
        )


def _parse_config(config_path: Path, weights_path: Path) -> dict[str, Any]:
    """``model.json`` read (no larger than a few megabytes plus its weights: Box bounds grow with
    the observation, and so do the weights) and checked for its format, version and schema."""
    limit = MAX_TEXT_BYTES + (weights_path.stat().st_size if weights_path.is_file() else 0)
    check_memory(
        JSON_BYTES_PER_BYTE * min(config_path.stat().st_size, limit + 1), "reading this JSON", str(config_path)
    )
    config = load_json(read_text(config_path, "model.json", limit), str(config_path))
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise SafeFormatError(
            f"{config_path} is not a recurrent_rl safe model (its format is {shorten(found)}, expected {FORMAT!r})"
        )
    if config.get("format_version") != FORMAT_VERSION:
        raise SafeFormatError(
            f"{config_path} is format version {shorten(config.get('format_version'))}; this recurrent_rl "
            f"reads version {FORMAT_VERSION}"
        )
    return check_safe_config(config, str(config_path))


@dataclass
class CheckedModel:
    """A safe copy that passed every check, with what building the model needs."""

    config: dict[str, Any]
    observation_space: Any
    action_space: Any
    policy_class: Any
    policy_kwargs: dict[str, Any]
    aliases: dict[str, str]
    meta: Any  # the policy on the meta device: the shapes, no memory
    tensors: dict[str, th.Tensor]


def check_safe_model(
    path: str | Path,
    custom: Mapping[str, type],
    optimizer: bool,
    n_envs: int | None,
    policies: Mapping[str, type] | None = None,
) -> CheckedModel:
    """Every check of a safe copy before anything is allocated on its word (see :mod:`.sizes`):
    the JSON's schema, the classes it names, its sizes against the tensors in the weights file
    (a policy built on the meta device must have exactly their shapes), the memory the model
    will take, then the weights themselves, which must be finite.

    :param policies: the policy classes by the name the file records (default: RecurrentPPO's);
        RecurrentSAC's loader gives its own, which this floor does not import
    """
    from recurrent_rl.io.sizes import check_model_memory, check_settings, check_shapes, meta_policy, weights_header
    from recurrent_rl.nets.policies import POLICY_ALIASES, RecurrentActorCriticPolicy

    config = read_safe_config(path)
    weights_path, config_path = safe_paths(path)
    where = str(config_path)
    with as_safe_error():
        observation_space = space_from_json(config["observation_space"], f"{where} (observation_space)")
        action_space = space_from_json(config["action_space"], f"{where} (action_space)")
        if policies is None:
            policies = {**POLICY_ALIASES, "RecurrentActorCriticPolicy": RecurrentActorCriticPolicy}
        policy_class: Any = policies.get(config["policy"])
        if policy_class is None:
            raise SafeFormatError(
                f"{where}: unknown policy {shorten(config['policy'])} for {config['algorithm']}; expected one of "
                f"{sorted(policies)}"
            )
        header = weights_header(weights_path)
        check_settings(config["policy_kwargs"], header, where)
        policy_kwargs = from_json(config["policy_kwargs"], f"{where}: policy_kwargs", custom)
        aliases = dict(config.get("aliases", {}))
        hyper = config["hyperparameters"]
        policy = meta_policy(
            policy_class, observation_space, action_space, hyper.get("use_sde", False), policy_kwargs, where
        )
        check_shapes(policy.state_dict(), header, aliases, weights_path, config_path.name)
        if optimizer:
            for entry, holder in _optimizer_holders(policy, config).items():
                check_optimizer(holder, config.get(entry), optimizer_path(path, entry), where)
        n_envs = config["n_envs"] if n_envs is None else n_envs
        check_model_memory(policy, n_envs, hyper, observation_space, action_space, optimizer, where)
        tensors = load_tensors(weights_path)
        check_finite(tensors, weights_path)
    return CheckedModel(
        config=config,
        observation_space=observation_space,
        action_space=action_space,
        policy_class=policy_class,
        policy_kwargs=policy_kwargs,
        aliases=aliases,
        meta=policy,
        tensors=tensors,
    )


@dataclass
class _Holder:
    """What :func:`~recurrent_rl.io.optimizer.check_optimizer` reads of a policy: its ``optimizer``."""

    optimizer: Any


def check_for_env(
    cls: Any,
    path: str | Path,
    env: Any,
    custom_classes: Mapping[str, type] | Iterable[type] | None,
    optimizer: bool,
    policies: Mapping[str, type] | None = None,
) -> tuple[CheckedModel, Any]:
    """The first steps of every algorithm's ``load_safe``: ``env`` (None, a VecEnv, a Gymnasium env or
    an id) wrapped as ``cls`` wraps it, the safe copy at ``path`` checked (:func:`check_safe_model`)
    for that env's number of envs, the file's algorithm matched with ``cls`` and its spaces with the
    env's. Returns the checked model and the wrapped env (None without one)."""
    from stable_baselines3.common.base_class import maybe_make_env

    where = str(safe_paths(path)[1])
    venv = None if env is None else cls._wrap_env(maybe_make_env(env, 0), verbose=0)
    checked = check_safe_model(
        path, custom_classes_map(custom_classes), optimizer, None if venv is None else venv.num_envs, policies
    )
    algorithm = checked.config["algorithm"]
    if policies is not None and algorithm != cls.__name__:
        raise SafeFormatError(f"{where} holds a {algorithm}, not a {cls.__name__}: load it with load_safe")
    spaces = checked.observation_space, checked.action_space
    if venv is not None and (venv.observation_space, venv.action_space) != spaces:
        raise SafeFormatError(
            f"the model in {where} was trained on observations {describe(spaces[0])} and actions "
            f"{describe(spaces[1])}, but the env has observations {describe(venv.observation_space)} and "
            f"actions {describe(venv.action_space)}: attach the env it was trained on"
        )
    return checked, venv


def restore_counters(model: Any, checked: CheckedModel, venv: Any) -> None:
    """What every algorithm's ``load_safe`` sets alike on a model constructed without building it:
    the step and update counters, the stats window, ``policy_kwargs`` and, without an env, the spaces."""
    config = checked.config
    model._stats_window_size = config["hyperparameters"]["stats_window_size"]
    model.num_timesteps = config["num_timesteps"]
    model._n_updates = config["n_updates"]
    model.policy_kwargs = checked.policy_kwargs
    if venv is None:
        model.observation_space, model.action_space = checked.observation_space, checked.action_space
        model.n_envs = config["n_envs"]


def build_with_weights(model: Any, checked: Any, where: str, weights_path: Path) -> None:
    """Set ``model`` up from its restored settings and load the checked weights into its policy
    (the last steps of every algorithm's ``load_safe``); a failure is a :class:`SafeFormatError`."""
    try:
        model._setup_model()
    except (ValueError, TypeError) as error:  # UserInputError included
        raise SafeFormatError(
            f"{where}: the stored settings do not build a model: {shorten(str(error), 200)}"
        ) from None
    tensors, aliases = checked.tensors, checked.aliases
    full = {name: tensors[aliases.get(name, name)] for name in model.policy.state_dict()}
    try:
        model.policy.load_state_dict(full, strict=True)
    except RuntimeError as error:
        raise SafeFormatError(f"{weights_path} does not fit the policy: {str(error).splitlines()[0]}") from None


def _optimizer_holders(policy: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizers a (meta) policy of ``config`` trains with, by JSON entry, each as a holder of
    ``optimizer`` (see :func:`model_optimizers`)."""
    if config["algorithm"] != "RecurrentSAC":
        return {"optimizer": policy}
    holders = {"optimizer": _Holder(policy.actor.optimizer), "critic_optimizer": _Holder(policy.critic.optimizer)}
    if config["hyperparameters"].get("log_ent_coef") is not None:  # SAC's: Adam over the one coefficient
        holders["ent_coef_optimizer"] = _Holder(th.optim.Adam([th.zeros(1, requires_grad=True)]))
    return holders


def check_safe_copy(
    path: str | Path,
    custom_classes: Mapping[str, type] | Iterable[type] | None = None,
    optimizer: bool = False,
    policies: Mapping[str, type] | None = None,
) -> None:
    """Every check that loading makes (``RecurrentPPO.load_safe``), without building the model: a safe copy (and with
    ``optimizer``, its optimizer state) that passes loads. ``recurrent-rl train --resume`` calls it
    before it writes anything. ``policies``: as :func:`check_safe_model`."""
    checked = check_safe_model(path, custom_classes_map(custom_classes), optimizer, None, policies)
    if optimizer:
        with as_safe_error():
            where = str(safe_paths(path)[1])
            for entry, holder in _optimizer_holders(checked.meta, checked.config).items():
                file, data = check_optimizer(holder, checked.config.get(entry), optimizer_path(path, entry), where)
                parameters = [p for group in holder.optimizer.param_groups for p in group["params"]]
                optimizer_from_safe(load_tensors(file), data, str(file), parameters)


def read_safe_vecnormalize(path: str | Path) -> dict[str, Any] | None:
    """The VecNormalize entry of a safe copy (None when the model was trained without VecNormalize),
    checked: settings in range, statistics finite, variances not negative, of the observations' shapes."""
    return read_safe_config(path).get("vecnormalize")


def load_safe_vecnormalize(path: str | Path, venv: Any) -> Any:
    """A ``VecNormalize`` around ``venv`` with the statistics of a safe copy, in evaluation mode
    (``training=False``: the statistics stay fixed; reward normalisation as it was saved)."""
    from stable_baselines3.common.vec_env import VecNormalize

    data = read_safe_vecnormalize(path)
    where = str(safe_paths(path)[1])
    if data is None:
        raise SafeFormatError(f"{where} holds no VecNormalize statistics: the model was trained without VecNormalize")
    try:
        normalizer = VecNormalize(
            venv,
            training=False,
            norm_obs=data["norm_obs"],
            norm_reward=data["norm_reward"],
            clip_obs=data["clip_obs"],
            clip_reward=data["clip_reward"],
            gamma=data["gamma"],
            epsilon=data["epsilon"],
            norm_obs_keys=data["norm_obs_keys"],
        )
    except (KeyError, ValueError, AssertionError) as error:
        raise SafeFormatError(
            f"{where}: the VecNormalize statistics do not fit this env: {shorten(str(error))}"
        ) from None
    if not normalizer.norm_obs:
        pass  # rewards only: SB3 keeps no observation statistics
    elif isinstance(normalizer.obs_rms, dict):
        missing = [key for key in normalizer.obs_rms if key not in data["obs_rms"]]
        if missing:
            raise SafeFormatError(f"{where}: the VecNormalize statistics lack the observation entry {missing[0]!r}")
        for key, rms in normalizer.obs_rms.items():
            set_rms(rms, data["obs_rms"][key], f"{where} (VecNormalize, {key!r})")
    else:
        if isinstance(data["obs_rms"], dict) and set(data["obs_rms"]) != {"mean", "var", "count"}:
            raise SafeFormatError(f"{where}: the VecNormalize statistics are for Dict observations, the env's are not")
        set_rms(normalizer.obs_rms, data["obs_rms"], f"{where} (VecNormalize)")
    set_rms(normalizer.ret_rms, data["ret_rms"], f"{where} (VecNormalize returns)")
    return normalizer
