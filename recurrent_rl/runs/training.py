"""Training from a config: a new run folder, or more steps in an existing one.

:func:`train` checks everything it can (config, env, model) before it creates the run folder,
so bad input leaves nothing on disk. Then it writes ``config.yaml``, trains with TensorBoard
logging, periodic evaluation (best model) and periodic checkpoints, and at the end writes the
final model, a checkpoint and the evaluation report. Ctrl-C or SIGTERM stops at the next env
step and writes a checkpoint; :func:`resume` continues from the latest checkpoint with the same
step counter, the same learning-rate schedule and the same TensorBoard curves, and finishes a
run whose checkpoint has reached its target (stopped in its last rollout or before its final
evaluation) without asking for more steps.

While training, the terminal shows the learning signal (:class:`~recurrent_rl.runs.callbacks.TrainingProgress`):
a progress bar with the recent mean return where stderr is a terminal, plain lines on stdout
elsewhere, and one line per periodic evaluation.

Both are what ``recurrent-rl train`` calls; see :mod:`recurrent_rl.io.run_folder` for the folder layout.
:func:`resume` lives in :mod:`recurrent_rl.runs.resume` and the learning loop both share in
:mod:`recurrent_rl.runs.learning`; both are importable from here.
"""

from __future__ import annotations

import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from recurrent_rl.algorithms import ALGORITHMS
from recurrent_rl.config.devices import check_device
from recurrent_rl.config.train import ConfigError, TrainConfig
from recurrent_rl.io import run_folder as runs, trust
from recurrent_rl.io.run_folder import RunError, StorageError
from recurrent_rl.ppo.algorithm import RecurrentPPO, using_torch_threads
from recurrent_rl.runs.checkpoints import write_model_checkpoint
from recurrent_rl.runs.learning import (  # noqa: F401  the names a run's callers import from here
    FINAL_EVAL_SEED,
    PERIODIC_EVAL_SEED,
    EvaluationHook,
    TrainingError,
    TrainResult,
    device_line,
    hparams,
    learn,
    make_logger,
    model_is_finite,
    save_run_config,
    stop_on_signals,
)
from recurrent_rl.runs.resume import resume  # noqa: F401  re-exported: train and resume, one import
from recurrent_rl.runs.vec_env import make_training_env  # noqa: F401  re-exported: its home before vec_env.py

# --- building blocks ----------------------------------------------------------------------------


def make_model(config: TrainConfig, env: VecEnv, verbose: int = 0) -> Any:
    """A new model of the config's algorithm (``algo``: :class:`RecurrentPPO`, ``MaskableRecurrentPPO``
    or ``RecurrentSAC``) as the config says (seeded with ``config.seed``), with its encoder if any."""
    kwargs = config.algorithm_kwargs()
    encoder = config.encoder
    algorithm = ALGORITHMS[config.algorithm]
    try:
        if config.algo != "ppo":
            return algorithm(env=env, seed=config.seed, verbose=verbose, torch_threads=config.torch_threads, **kwargs)
        if encoder.path is not None:
            from recurrent_rl.supervised.encoder import encoder_policy_kwargs

            rest = {
                k: v for k, v in kwargs["policy_kwargs"].items() if k not in ("memory", "hidden_size", "num_layers")
            }
            kwargs["policy_kwargs"] = encoder_policy_kwargs(encoder.path, **rest)
        model = RecurrentPPO(env=env, seed=config.seed, verbose=verbose, torch_threads=config.torch_threads, **kwargs)
        if encoder.path is not None:
            from recurrent_rl.supervised.encoder import load_encoder

            # with VecNormalize on observations, let it standardise (starting from the encoder's
            # statistics) rather than standardising twice
            stats = "vecnormalize" if config.normalize.enabled and config.normalize.norm_obs else "encoder"
            load_encoder(
                model, encoder.path, freeze=encoder.freeze, critic=encoder.critic, observation_statistics=stats
            )
        return model
    except (ValueError, OSError) as error:
        raise ConfigError(f"the config does not fit {config.env}: {error}") from None
    except RuntimeError as error:
        if "allocate" not in str(error):
            raise
        raise ConfigError(
            f"the model does not fit in memory ({str(error).splitlines()[0]}): lower policy_kwargs.hidden_size, "
            "policy_kwargs.num_layers or the net_arch sizes"
        ) from None


ENCODER_KEYS = ("memory", "hidden_size", "num_layers")  # the policy_kwargs an encoder dictates


def resolve_encoder(config: TrainConfig, pinned: Iterable[str] = (), notes: list[str] | None = None) -> TrainConfig:
    """``config`` with the memory options its encoder dictates (so that config.yaml tells the truth).

    The encoder's memory type and sizes become the policy's: ``policy_kwargs.memory``,
    ``hidden_size`` and ``num_layers`` follow it. Where the config names a memory of its own
    (``policy_kwargs.memory``, set by ``--memory``) or the caller says the user chose a size
    (``pinned``: names among ``hidden_size``, ``num_layers``) and it differs, that is a
    :class:`ConfigError`: the encoder cannot be loaded into another memory.

    :param notes: if given, gets one line that says what was chosen and why (the CLI prints it)
    """
    if config.encoder.path is None:
        return config
    from recurrent_rl.supervised.encoder import read_encoder

    path = config.encoder.path
    try:
        encoder = read_encoder(path)
    except (ValueError, OSError) as error:
        raise ConfigError(f"cannot read the encoder {path}: {error}", key="encoder.path") from None
    chosen = {key: encoder[key] for key in ENCODER_KEYS}
    pk = config.policy_kwargs
    asked = {
        key: getattr(pk, key) for key in ENCODER_KEYS if key in pinned or (key == "memory" and pk.memory is not None)
    }
    clash = {key: value for key, value in asked.items() if value != chosen[key]}
    if clash:
        wanted = ", ".join(
            f"policy_kwargs.{k}={v}" + (f" (--memory {v})" if k == "memory" else "") for k, v in clash.items()
        )
        pretrain = " ".join(f"--set model.{k}={v}" for k, v in clash.items())
        raise ConfigError(
            f"{wanted} contradicts the encoder {path}, a {_memory_text(chosen)}: a pretrained encoder is loaded "
            f"into a memory of its own type and sizes, which the encoder sets. Leave {', '.join(clash)} out, or "
            f"pretrain an encoder of that kind: recurrent-rl pretrain ... {pretrain}",
            key="encoder.path",
        )
    if notes is not None:
        before = {"memory": config.memory, "hidden_size": pk.hidden_size, "num_layers": pk.num_layers}
        replaced = f"; it replaces the config's {_memory_text(before)}" if before != chosen else ""
        source = encoder.get("metadata", {}).get("env_id")
        recorded = f" (pretrained on {source})" if source else ""
        notes.append(
            f"encoder {path}{recorded}: the policy's memory is the encoder's, a {_memory_text(chosen)}{replaced}"
        )
    return config.replace(policy_kwargs=pk.replace(**chosen))


def _memory_text(memory: dict[str, Any]) -> str:
    layers = memory["num_layers"]
    return f"{memory['memory']} of hidden_size {memory['hidden_size']} with {layers} layer{'s' if layers != 1 else ''}"


def write_checkpoint(run_dir: Path, model: RecurrentPPO, keep: int = 0) -> Path:
    """Deprecated: :func:`recurrent_rl.io.run_folder.write_model_checkpoint` (``folders.write_checkpoint``
    is the atomic checkpoint folder it fills)."""
    warnings.warn(
        "recurrent_rl.runs.training.write_checkpoint is deprecated: use "
        "recurrent_rl.runs.checkpoints.write_model_checkpoint",
        DeprecationWarning,
        stacklevel=2,
    )
    return write_model_checkpoint(run_dir, model, keep)


# --- train and resume ---------------------------------------------------------------------------


def train(
    config: TrainConfig,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    progress_bar: bool | None = None,
    verbose: int = 0,
    callbacks: Sequence[BaseCallback] = (),
    on_evaluation: EvaluationHook | None = None,
) -> TrainResult:
    """Train a new agent into a new run folder ``runs_dir/name`` (default name: env, memory, seed, time).

    :param progress_bar: True: a progress bar with the learning signal; False: plain lines on
        stdout instead (every 10% of the run); None: the bar when stderr is a terminal, else lines
    :param verbose: 1 prints SB3's log table after each rollout
    :param callbacks: extra SB3 callbacks
    :param on_evaluation: called after each periodic evaluation with the step and its report; when
        it returns a string, training stops there as on a signal (checkpoint written, the result's
        ``interrupted`` is that string, no final evaluation)

    Torch runs on ``config.torch_threads`` threads during the call (the previous count is restored).
    """
    if name is not None:
        runs.check_run_name(name)
        if (Path(runs_dir) / name).exists():
            path = Path(runs_dir) / name
            raise RunError(
                f"run folder {path} already exists; nothing was changed. Choose another --name, "
                f"or continue that run with: recurrent-rl train --resume {path}"
            )
    check_device(config.device)
    with using_torch_threads(config.torch_threads):  # small recurrent nets run fastest on one thread
        return _train(config, Path(runs_dir), name, progress_bar, verbose, callbacks, on_evaluation)


def _train(
    config: TrainConfig,
    runs_dir: Path,
    name: str | None,
    progress_bar: bool | None,
    verbose: int,
    callbacks: Sequence[BaseCallback],
    on_evaluation: EvaluationHook | None = None,
) -> TrainResult:
    config = resolve_encoder(config)
    env = make_training_env(config, config.seed)
    try:
        model = make_model(config, env, verbose)
        print(device_line(model, config.device), file=sys.stderr)
        run_dir = runs.create_run_dir(
            runs_dir, name or runs.run_name(config.env, config.memory, config.seed), unique=name is None
        )
    except BaseException:
        env.close()
        raise
    try:
        if config.encoder.path is not None:  # the run keeps its own copy: config.yaml alone reproduces it
            with runs.atomic_open(run_dir / runs.ENCODER, "wb") as file:
                file.write(Path(config.encoder.path).read_bytes())
        save_run_config(run_dir, config)
        runs.update_run_info(
            run_dir,
            status="created",
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            command=sys.argv,
            versions=runs.versions(),
            num_timesteps=0,
            device=str(model.device),
            # the modules the config names (its own env): signed, so this user's --resume imports them again
            **({trust.FIELD: trust.record(run_dir, config.modules)} if config.modules else {}),
        )
    except Exception as error:
        failure = runs.storage_error(error)
        if failure is None:
            raise
        env.close()
        shutil.rmtree(run_dir, ignore_errors=True)  # it holds nothing yet: no half-made run is left behind
        gone = "it was removed" if not run_dir.exists() else "it holds no model"
        raise StorageError(f"{failure}; nothing was trained (the new run folder {run_dir}: {gone})") from None
    with runs.run_lock(run_dir):
        return learn(
            run_dir,
            model,
            config,
            config.n_timesteps,
            fresh=True,
            progress_bar=progress_bar,
            verbose=verbose,
            callbacks=callbacks,
            on_evaluation=on_evaluation,
        )
