"""Reading a training config: a file (YAML, JSON or TOML, flat or in rl-baselines3-zoo's layout
keyed by env id), a mapping, ``KEY=VALUE`` overrides (``--set``), and what ``--help`` lists.

A config file is data, whoever wrote it (:mod:`recurrent_rl.received`): its ``encoder.path`` is
read relative to the file's folder and must stay inside it, and an env id or ``gym_packages`` that
names a module (which Gymnasium would import) is refused unless the user's own command named it
when the run was made (:mod:`recurrent_rl.io.trust`). What the command line gives (``--set``,
``--env``, ``--encoder``) is the user's own and is not restricted so. The config itself, its keys,
types and checks, is :class:`recurrent_rl.config.train.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from recurrent_rl.config import schema, zoo
from recurrent_rl.config.envs import check_env_id
from recurrent_rl.config.schema import ConfigError, describe_keys
from recurrent_rl.config.sections import PolicyConfig
from recurrent_rl.config.train import TrainConfig
from recurrent_rl.received import ReceivedFileError, env_id_from_file, path_inside, shorten


def config_from_dict(
    values: Mapping[str, Any], overrides: Iterable[str] = (), source: str | None = None, check_env: bool = True
) -> TrainConfig:
    """Build a :class:`TrainConfig` from a mapping plus ``KEY=VALUE`` overrides (dotted keys)."""
    overrides = list(overrides)
    try:
        values = unwrap_zoo_layout(values, _env_override(overrides))
        if isinstance(values.get("policy"), Mapping):
            raise ConfigError(
                "policy is the policy class name (e.g. policy: MlpLstmPolicy), got a mapping "
                f"{shorten(dict(values['policy']))}; "
                "the policy's options go under policy_kwargs (e.g. policy_kwargs: {memory: lstm})",
                key="policy",
            )
        values = zoo.from_zoo(apply_overrides(values, overrides))  # --set policy_kwargs="dict(...)" too
        if isinstance(values.get("env"), str):
            values["env"] = zoo.resolve_env_id(values["env"])
        config = TrainConfig.from_dict(values)
    except ConfigError as error:
        raise error.with_source(source) if source else error from None
    if check_env:
        check_env_id(config.env, packages=config.gym_packages)
    return config


ENCODER_PATH_RULE = (
    "a path in a config file is read relative to the file's folder and must stay inside it (a config file "
    "may come from anyone): put the encoder in that folder (or below it) and name it relative to the file, "
    "or give it on the command line: --encoder PATH"
)


def load_config(path: str | Path, overrides: Iterable[str] = (), check_env: bool = True) -> TrainConfig:
    """Read a config file (YAML, JSON or TOML) and apply ``KEY=VALUE`` overrides.

    The file is data (see the module docstring): its ``encoder.path`` becomes an absolute path
    inside the file's folder (a run folder's ``config.yaml`` names its own copy, ``encoder.pt``)
    or a :class:`~recurrent_rl.received.ReceivedFileError`, and its env id must not name a module
    unless the run folder's signed record (:func:`recurrent_rl.io.trust.trusted_names`) says the
    user's own command did. An override of the same key replaces the file's value unchecked.
    """
    path = Path(path)
    overrides = list(overrides)
    values = schema.read_config_file(path)
    try:
        values = unwrap_zoo_layout(values, _env_override(overrides))
    except ConfigError as error:
        raise error.with_source(str(path)) from None
    given = {override.partition("=")[0].strip() for override in overrides}
    encoder = values.get("encoder")
    if (
        isinstance(encoder, Mapping)
        and isinstance(encoder.get("path"), str)
        and not given & {"encoder", "encoder.path"}
    ):
        where = f"{path}: config key 'encoder.path'"
        try:
            inside = path_inside(path.parent, encoder["path"], where)
        except ReceivedFileError as error:
            raise ReceivedFileError(f"{error}; {ENCODER_PATH_RULE}") from None
        values["encoder"] = {**encoder, "path": str(inside)}
    env = values.get("env")
    packages = values.get("gym_packages")
    if (isinstance(env, str) and ":" in env and "env" not in given) or (packages and "gym_packages" not in given):
        from recurrent_rl.io.trust import trusted_names

        trusted = trusted_names(path.parent)
        if isinstance(env, str) and ":" in env and "env" not in given:
            env_id_from_file(env, f"{path} (config key 'env')", trusted=trusted.get("env") == env)
        if packages and "gym_packages" not in given:
            _check_gym_packages(packages, trusted.get("gym_packages"), path)
        named = [name for name in (env if ":" in str(env) else None, packages) if name]
        if named:
            print(
                f"note: {path} names the modules of your own command ({', '.join(map(str, named))}); they are "
                "imported as when the run was made",
                file=sys.stderr,
            )
    return config_from_dict(values, overrides, source=str(path), check_env=check_env)


def _check_gym_packages(packages: Any, trusted: str | None, path: Path) -> None:
    """A file's ``gym_packages``, imported only when the run folder's signed record says the user's own
    command named them (see :mod:`recurrent_rl.io.trust`)."""
    listed = " ".join(map(str, packages)) if isinstance(packages, (list, tuple)) else str(packages)
    if trusted == listed:
        return
    raise ReceivedFileError(
        f"{path} (config key 'gym_packages') names the modules {shorten(listed)}, which would be imported, running "
        "their code: a module named in a file is never imported. If you trust them, name them yourself: "
        "--gym-packages " + shorten(listed, 60)
    )


def unwrap_zoo_layout(values: Mapping[str, Any], env: str | None = None) -> dict[str, Any]:
    """An rl-baselines3-zoo file (``{env_id: {hyperparameters}, ...}``) -> ``{env: env_id, hyperparameters}``:
    the section of ``env`` (the command's ``--env``), or the only one; its values in this package's
    terms, with the zoo's defaults for what it leaves out (:func:`recurrent_rl.config.zoo.from_zoo`).
    A flat config comes back as it is, with the zoo's Python text read."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if not zoo.is_zoo_layout(values, names):
        return zoo.from_zoo(values)
    key, inner = zoo.pick_section(values, env)
    return zoo.from_zoo({"env": key, **inner}, zoo_section=True)


def _env_override(overrides: Iterable[str]) -> str | None:
    """The env id the last ``env=ID`` override names (``--env ID``), if any."""
    env = None
    for override in overrides:
        key, _, text = override.partition("=")
        if key.strip() == "env":
            try:
                value = schema.load_yaml(text, "--set env") if text.strip() else None
            except Exception:  # apply_overrides reports a malformed value
                value = None
            env = value if isinstance(value, str) else None
    return env


def apply_overrides(values: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``values`` with each ``KEY=VALUE`` applied; VALUE is read as YAML (``[64, 64]``, ``null``, ``1e-3``).

    ``policy.X`` (a natural guess for the policy's options) is refused with the key to use,
    ``policy_kwargs.X``: ``policy`` is the policy class name.
    """
    overrides = list(overrides)
    for override in overrides:
        key, _, value = override.partition("=")
        head, dot, rest = key.strip().partition(".")
        if head == "policy" and dot:
            fields = [f.name for f in dataclasses.fields(PolicyConfig)]
            known = rest.split(".")[0] in fields
            hint = (
                f"--set policy_kwargs.{rest}={value}" if known else f"policy_kwargs.<key>, one of: {', '.join(fields)}"
            )
            raise ConfigError(
                f"'policy' is the policy class name (e.g. --set policy=MlpLstmPolicy); the policy's options are "
                f"under policy_kwargs: {hint}",
                key=key.strip(),
            )
    return schema.apply_overrides(values, overrides, TrainConfig)


def config_keys(effective: Mapping[str, Any] | None = None, label: str = "preset") -> list[str]:
    """One line per config key (dotted), with its type, default and help: for ``--help`` and docs.

    :param effective: a config mapping (a preset's, not validated) whose values are shown next to
        the defaults where they differ, as ``<label> <value>``
    """
    return describe_keys(TrainConfig, effective=unwrap_zoo_layout(effective) if effective else None, label=label)
