"""Pretraining from a config: record trajectories, train a sequence model, export ``encoder.pt``.

The config is a :class:`~recurrent_rl.supervised.config.PretrainConfig` (its keys: see
:mod:`recurrent_rl.supervised.config`; presets: ``recurrent_rl/config/presets/<name>.pretrain.yaml``).

``pretrain(config)`` checks what it can before it writes anything (the policy, then the recorded
data against the target and the validation split), then writes
``runs/<name>__<env>__<memory>__seed<seed>__<time>/`` with ``config.yaml`` (resolved: ``recurrent-rl
pretrain --config`` on it runs it again), ``config.json`` (the same, for scripts that read it),
``trajectories.npz``, ``model.pt``, ``encoder.pt``, ``metrics.json``, ``history.json``,
``checkpoints/``, ``tb/`` (TensorBoard) and ``run.json`` (status, command line; with a
``data.policy`` of ``module:function``, the signed record that the user's own command named it:
:mod:`recurrent_rl.io.trust`). A full disk or a read-only folder stops it with one line
(:class:`~recurrent_rl.io.run_folder.StorageError`), and run.json says so.

While it trains, the terminal shows a progress bar over the epochs with the latest losses where
stderr is a terminal, else one plain line every 10% of the epochs; at the end it prints the
command that trains an agent with the encoder.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch as th

from recurrent_rl.config.schema import ConfigError, save_config
from recurrent_rl.errors import refuse_pickle
from recurrent_rl.io import run_folder as folders
from recurrent_rl.supervised.config import (  # noqa: F401  re-exported: they were defined here
    TARGETS,
    DataConfig,
    EncoderModelConfig,
    PretrainConfig,
    apply_overrides,
    deprecated_name,
    load_config_file,
    parse_value,
    resolve_config,
)
from recurrent_rl.supervised.data import record_trajectories
from recurrent_rl.supervised.encoder import export_encoder
from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig, save_sequence_model
from recurrent_rl.supervised.trainer import evaluate, fit


def _load_policy(spec: str, trust_pickle: bool = False) -> Any:
    """``"random"``, a saved SB3 / recurrent_rl model (``.zip``), or ``"module:function"``.

    A recurrent_rl model is read from its weights-only copy (``.safetensors`` + ``.json`` beside the
    zip, as run folders hold) when there is one; SB3's zip itself unpickles code, so it is opened
    only with ``trust_pickle``.
    """
    if spec == "random":
        return spec
    if spec.endswith(".zip"):
        from recurrent_rl.algorithms import load_safe
        from recurrent_rl.io.safe import has_safe_copy

        if has_safe_copy(spec):
            return load_safe(spec, device="cpu")
        if not Path(spec).is_file():
            raise ConfigError(f"the policy file {spec} does not exist", key="data.policy")
        if not trust_pickle:
            raise refuse_pickle(spec, "SB3's zip", " to record with it")
        from recurrent_rl import RecurrentPPO

        try:
            return RecurrentPPO.load(spec, device="cpu")
        except Exception:  # noqa: BLE001  not a RecurrentPPO file: try SB3's PPO
            from stable_baselines3 import PPO

            try:
                return PPO.load(spec, device="cpu")
            except Exception as error:  # noqa: BLE001  a zip of the wrong kind fails in many ways
                raise ConfigError(
                    f"cannot load a RecurrentPPO or PPO model from {spec}: {type(error).__name__}: {error}",
                    key="data.policy",
                ) from None
    if ":" in spec:
        import importlib

        module, name = spec.split(":", 1)
        try:
            function = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"cannot import {spec!r}: {type(error).__name__}: {error}", key="data.policy") from None
        if not callable(function):
            raise ConfigError(f"{spec!r} is not a function (obs -> action)", key="data.policy")
        return function
    raise ConfigError(
        f"use 'random', a saved model path ending in .zip, or 'module:function', got {spec!r}", key="data.policy"
    )


@dataclass
class PretrainResult:
    """Where a pretraining run wrote its files, and its final numbers."""

    run_dir: Path
    model_path: Path
    encoder_path: Path
    metrics: dict[str, Any]
    next_command: str = ""  # recurrent-rl train ... --encoder <encoder_path>


def next_command(env_id: str, encoder_path: str | Path) -> str:
    """The ``recurrent-rl train`` command that trains an agent on ``env_id`` with this encoder
    (with the env's training preset where there is one)."""
    from recurrent_rl.config.presets import presets_by_env

    presets = presets_by_env().get(env_id, [])
    gru = [name for name in presets if name.endswith("-gru")]
    where = f"--preset {(gru or presets)[0]}" if presets else f"--env {env_id}"
    return f"recurrent-rl train {where} --encoder {encoder_path}"


def pretrain(
    config: PretrainConfig | Mapping[str, Any],
    runs_dir: str | Path = "runs",
    verbose: bool = True,
    progress_bar: bool | None = None,
    trust_pickle: bool = False,
) -> PretrainResult:
    """Record trajectories, train a sequence model on them, and write a run folder (see module doc).

    :param verbose: print what happens (False: nothing)
    :param progress_bar: True: a bar over the epochs; False: a plain line every 10% of the epochs;
        None: the bar when stderr is a terminal, else lines
    :param trust_pickle: allow ``data.policy`` to be an SB3 zip without a weights-only copy beside
        it (opening it runs any code it holds)
    """
    th.set_num_threads(1)  # small recurrent nets run fastest on one thread
    config = PretrainConfig.from_dict(config) if isinstance(config, Mapping) else config
    d, log = config.data, (print if verbose else None)
    bar = verbose and (sys.stderr.isatty() if progress_bar is None else progress_bar)
    started = time.perf_counter()
    trajectories = record_trajectories(d.env_id, d.n_steps, _load_policy(d.policy, trust_pickle), seed=d.seed)
    try:
        dataset = trajectories.to_dataset(d.target, d.target_indices)
        dataset.split(config.train.val_fraction, config.train.seed)  # an empty split fails here, before any file
    except ValueError as error:
        raise ConfigError(
            f"the {trajectories.n_transitions} steps recorded from {d.env_id} ({trajectories.n_episodes} "
            f"episode(s)) do not fit the config: {error}"
        ) from None
    if log:
        log(
            f"recorded {trajectories.n_transitions} transitions in {trajectories.n_episodes} episodes of {d.env_id} "
            f"({time.perf_counter() - started:.1f} s); target: {d.target} {list(d.target_indices or [])}"
        )

    name = f"{config.name}__{folders.run_name(d.env_id, config.model.memory, config.train.seed)}"
    run = folders.create_run_dir(runs_dir, name, unique=True)  # never reuses a folder
    try:
        return _write_run(run, config, trajectories, dataset, started, log, bar)
    except BaseException as error:
        failure = folders.storage_error(error) if isinstance(error, Exception) else None
        status = (
            f"failed: {str(failure).partition(';')[0]}"
            if failure is not None
            else "failed: the gradient became non-finite"
            if isinstance(error, FloatingPointError)
            else "interrupted (Ctrl-C)"
            if isinstance(error, KeyboardInterrupt)
            else f"crashed: {type(error).__name__}"
        )
        try:
            folders.update_run_info(run, status=status)
            noted = ""
        except Exception as again:
            if folders.storage_error(again) is None:
                raise
            noted = " (run.json could not be updated either)"
        if failure is None:
            raise
        raise folders.StorageError(
            f"pretraining stopped: {failure}. The run folder {run} keeps what was written before{noted}"
        ) from None


def _write_run(
    run: Path, config: PretrainConfig, trajectories: Any, dataset: Any, started: float, log: Any, bar: bool
) -> PretrainResult:
    """The pretraining run's files in ``run``, from its config and recorded data (see :func:`pretrain`)."""
    from recurrent_rl.io import trust

    d = config.data
    info: dict[str, Any] = {
        "status": "running",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": sys.argv,
        "versions": folders.versions(),
    }
    # pretrain() is reached only with a policy the user gave (a file's module is refused when it is read)
    record = trust.record(run, {"data.policy": d.policy})
    if record is not None:
        info[trust.FIELD] = record
    folders.update_run_info(run, **info)
    again = f"recurrent-rl pretrain --config {shlex.quote(str(run / folders.CONFIG))}"
    if d.policy != "random":  # a file names no module nor path outside its folder: the command line does
        again += f" --set {shlex.quote(f'data.policy={d.policy}')}"
    save_config(
        config,
        run / folders.CONFIG,
        header=f"Resolved pretraining config of run {run.name}.\nRun it again: {again}",
    )
    folders.atomic_write_json(run / "config.json", config.to_dict())
    trajectories.save(run / "trajectories.npz")

    model_config = SequenceModelConfig(
        input_size=dataset.input_size,
        output_size=dataset.target_size,
        task="many_to_many",
        objective="regression",
        **config.model.to_dict(),
    )
    th.manual_seed(config.train.seed)  # the initial weights
    model = SequenceModel(model_config)
    result = fit(
        model,
        dataset,
        config.train,
        run_dir=run,
        log=None if bar else log,
        log_every=max(1, config.train.epochs // 10),
        progress_bar=bar,
    )
    _, val_set = dataset.split(config.train.val_fraction, config.train.seed)
    metrics = {
        "transitions": trajectories.n_transitions,
        "episodes": trajectories.n_episodes,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "seconds": round(time.perf_counter() - started, 2),
        **{f"val_{k}": v for k, v in (evaluate(model, val_set).items() if val_set is not None else [])},
    }
    metadata = {
        "env_id": d.env_id,
        "target": d.target,
        "target_indices": list(d.target_indices or []),
        "transitions": trajectories.n_transitions,
        "run": str(run),
    }
    model_path = save_sequence_model(model, run / folders.SEQUENCE_MODEL, metadata)
    encoder_path = export_encoder(model, run / folders.ENCODER, metadata)
    folders.atomic_write_json(run / "metrics.json", metrics)
    folders.update_run_info(run, status="finished")
    command = next_command(d.env_id, encoder_path)
    if log:
        log(
            f"run folder: {run}\n  model: {model_path}\n  encoder: {encoder_path}\n  metrics: {metrics}\n"
            f"train an agent with it: {command}  (add --freeze-encoder to keep it fixed)"
        )
    return PretrainResult(run, model_path, encoder_path, metrics, command)


def __getattr__(name: str) -> Any:
    return deprecated_name(__name__, name)  # TrainConfig, now FitConfig
