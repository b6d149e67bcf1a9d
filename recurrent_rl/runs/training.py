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
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HumanOutputFormat,
    KVWriter,
    Logger,
    TensorBoardOutputFormat,
)
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from recurrent_rl.algorithms import ALGORITHMS, check_resumable
from recurrent_rl.config.devices import check_device
from recurrent_rl.config.train import ConfigError, TrainConfig, load_config, save_config
from recurrent_rl.errors import TRUST_PICKLE_FLAG, NonFiniteLossError, refuse_pickle
from recurrent_rl.io import run_folder as runs, trust
from recurrent_rl.io.run_folder import RunError, StorageError
from recurrent_rl.nets.devices import choose_device
from recurrent_rl.ppo.algorithm import RecurrentPPO, check_torch_threads, using_torch_threads
from recurrent_rl.runners.subproc import EnvProcessError
from recurrent_rl.runs.callbacks import (
    MemoryDiagnostics,
    PeriodicCheckpoint,
    PeriodicEvaluation,
    StopFlag,
    StopOnFlag,
    TrainingProgress,
)
from recurrent_rl.runs.checkpoints import REPLAY_BUFFER, save_model, save_vecnormalize, write_model_checkpoint
from recurrent_rl.runs.evaluation import EvalReport, make_env, run_episodes, save_report
from recurrent_rl.runs.vec_env import make_training_env  # noqa: F401  re-exported: its home before vec_env.py

# Episodes of the periodic evaluations use seeds seed + PERIODIC_EVAL_SEED + i (the same episodes
# at every evaluation, so they compare), the final evaluation seed + FINAL_EVAL_SEED + i.
PERIODIC_EVAL_SEED = 1_000
FINAL_EVAL_SEED = 10_000


def model_is_finite(model: RecurrentPPO) -> bool:
    """Whether the policy's parameters and the VecNormalize statistics hold no nan or inf."""
    if not all(bool(th.isfinite(p).all()) for p in model.policy.parameters()):
        return False
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is None:
        return True
    stats = [getattr(vec_normalize, "obs_rms", None), getattr(vec_normalize, "ret_rms", None)]
    arrays = [np.asarray(a) for rms in stats if rms is not None for a in _rms_arrays(rms)]
    return all(bool(np.isfinite(a).all()) for a in arrays)


def _rms_arrays(rms: Any) -> list[Any]:
    if isinstance(rms, dict):  # Dict observations: one RunningMeanStd per key
        return [a for value in rms.values() for a in _rms_arrays(value)]
    return [rms.mean, rms.var]


class TrainingError(RuntimeError):
    """Training stopped on an error the user can act on (non-finite loss); the run folder is intact."""


@dataclass
class TrainResult:
    run_dir: Path
    model: RecurrentPPO
    num_timesteps: int
    report: EvalReport | None = None  # the final evaluation (None if interrupted or disabled)
    interrupted: str | None = None  # "SIGINT" or "SIGTERM" if a signal stopped training
    checkpoint: Path | None = None  # the last checkpoint written
    config: TrainConfig | None = None

    def summary(self) -> str:
        """One line: ``<env> <memory> seed <seed>: <steps> steps, evaluation over N episodes: mean +/- std``."""
        head = f"{self.config.env} {self.config.memory} seed {self.config.seed}: " if self.config else ""
        if self.report is None:
            return f"{head}{self.num_timesteps} steps"
        return (
            f"{head}{self.num_timesteps} steps, evaluation over {self.report.episodes} episodes: "
            f"{self.report.mean_return:.1f} +/- {self.report.std_return:.1f}"
        )


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


def hparams(config: TrainConfig) -> dict[str, bool | str | float | int]:
    """The config flattened to ``key.sub: value`` scalars for TensorBoard's HParams tab."""
    flat: dict[str, Any] = {}

    def walk(values: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and key != "env_kwargs":
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (bool, int, float, str)):
                flat[prefix + key] = value
            else:
                flat[prefix + key] = json.dumps(value)

    walk(config.to_dict(), "")
    return flat


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM set ``flag`` (a second Ctrl-C stops at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.set(name)
        print(
            f"\n{name}: stopping after this step and writing a checkpoint (Ctrl-C again stops at once)", file=sys.stderr
        )

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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


def device_line(model: RecurrentPPO, asked: str) -> str:
    """The run's first line: the device it trains on and why (``auto``'s rule, or what was asked)."""
    if asked == "auto":
        return choose_device(model.observation_space, model.policy_kwargs).line()
    return f"device: {model.device} (device: {asked} in the config or on the command line)"


# --- train and resume ---------------------------------------------------------------------------


# called after each periodic evaluation with the step and the report; a returned string stops the
# run there (a checkpoint is written and the run's status is "interrupted (<string>)"), as a
# hyperparameter search prunes a trial (recurrent_rl.sweeps.tune)
EvaluationHook = Callable[[int, EvalReport], "str | None"]


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
        _save_run_config(run_dir, config)
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
        return _learn(
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


def resume(
    run_dir: str | Path,
    timesteps: int | None = None,
    progress_bar: bool | None = None,
    verbose: int = 0,
    callbacks: Sequence[BaseCallback] = (),
    trust_pickle: bool = False,
    device: str | None = None,
) -> TrainResult:
    """Continue a run from its latest checkpoint, up to ``timesteps`` in total (default: its config's).

    A run whose checkpoint has reached the total but that did not finish (stopped during its last
    rollout, or before its final evaluation) is finished: final model, final evaluation, status
    ``finished``, without more training. A finished run needs a larger ``timesteps`` to go on.

    The checkpoint is read from its weights-only copy (``model.safetensors``, ``model.json`` with
    the VecNormalize statistics, ``model.optimizer.safetensors``): nothing is unpickled. A
    checkpoint without one (written by a model the safe format cannot describe, or from elsewhere)
    is read from SB3's zip and ``vecnormalize.pkl`` only with ``trust_pickle=True``.

    ``device`` (None: the config's) continues the run on another device than its config names:
    a run trained on CUDA goes on on a machine without a GPU (``device="cpu"``), the optimizer's
    state moved with the weights. The config is left as it is; the run's ``resumes`` record the
    device of each segment.
    """
    if device is not None:
        check_device(device)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"--resume {run_dir}: no such run folder")
    runs.check_not_pretraining_run(run_dir, "--resume")
    if not runs.is_run_dir(run_dir):
        raise RunError(f"--resume {run_dir}: not a run folder (no {runs.CONFIG})")
    with runs.run_lock(run_dir):  # before anything is read or written: one trainer per run
        return _resume(run_dir, timesteps, progress_bar, verbose, callbacks, trust_pickle, device)


def _resume(
    run_dir: Path,
    timesteps: int | None,
    progress_bar: bool | None,
    verbose: int,
    callbacks: Sequence[BaseCallback],
    trust_pickle: bool = False,
    device: str | None = None,
) -> TrainResult:
    runs.remove_leftovers(run_dir)  # temporary files of writes a kill interrupted
    config = load_config(run_dir / runs.CONFIG)
    checkpoint = runs.latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunError(
            f"--resume {run_dir}: the run has no checkpoint to continue from (it stopped before the first one). "
            f"Start it again: recurrent-rl train --config {run_dir / runs.CONFIG}"
        )
    if device is None:
        try:
            check_device(config.device)
        except ConfigError as error:
            raise RunError(
                f"--resume {run_dir}: its config.yaml says {error}; continue it on another device with "
                f"--device (e.g. recurrent-rl train --resume {run_dir} --device cpu)"
            ) from None
    try:
        done = runs.checkpoint_step(checkpoint)
    except (OSError, ValueError) as error:
        raise RunError(
            f"--resume {run_dir}: checkpoint {checkpoint} has no readable {runs.CHECKPOINT_STATE} ({error})"
        ) from None
    total = config.n_timesteps if timesteps is None else timesteps
    info = runs.read_run_info(run_dir)
    if total <= done and info.get("status") == "finished":
        raise RunError(
            f"--resume {run_dir}: the run is already at {done} steps (target {total}) and finished; "
            f"pass --timesteps N with N > {done} to train further"
        )
    safe = _has_resumable_safe_copy(checkpoint)
    if not safe and not trust_pickle:
        raise refuse_pickle(
            checkpoint / runs.MODEL,
            "SB3's zip (with vecnormalize.pkl)",
            f": recurrent-rl train --resume {run_dir} {TRUST_PICKLE_FLAG}",
        )
    if safe:  # every check of the received checkpoint (its optimizer state too) before anything is written
        check_resumable(checkpoint / runs.MODEL, config.algorithm)
    with using_torch_threads(config.torch_threads):
        return _continue(run_dir, config, checkpoint, done, total, info, progress_bar, verbose, callbacks, safe, device)


def _has_resumable_safe_copy(checkpoint: Path) -> bool:
    from recurrent_rl.io.safe import has_safe_copy, optimizer_path

    return has_safe_copy(checkpoint / runs.MODEL) and optimizer_path(checkpoint / runs.MODEL).is_file()


def _load_checkpoint(checkpoint: Path, env: VecEnv, config: TrainConfig, safe: bool, device: str | None = None) -> Any:
    """The model of ``checkpoint`` on ``env`` (wrapped in its VecNormalize statistics when the run
    normalises) on ``device`` (None: the config's): from the weights-only copy when ``safe``, else
    from SB3's zip and pickle; a RecurrentSAC's replay buffer from the checkpoint's arrays (an empty
    buffer, with a warning, when the checkpoint has none)."""
    prefix = checkpoint / runs.MODEL
    device = config.device if device is None else device
    algorithm = ALGORITHMS[config.algorithm]
    if not safe:
        if isinstance(env, VecNormalize):
            stats = VecNormalize.load(str(checkpoint / runs.VECNORMALIZE), env.venv)
            stats.training = True
            env = stats
        model = algorithm.load(prefix, env=env, device=device, torch_threads=config.torch_threads)
    else:
        from recurrent_rl.io.safe import load_safe_vecnormalize

        if isinstance(env, VecNormalize):
            stats = load_safe_vecnormalize(prefix, env.venv)
            stats.training = True
            env = stats
        model = algorithm.load_safe(prefix, env=env, device=device, optimizer=True)
        model.torch_threads = check_torch_threads(config.torch_threads)
    if hasattr(model, "load_replay_arrays"):
        if (checkpoint / REPLAY_BUFFER).is_file():
            model.load_replay_arrays(checkpoint / REPLAY_BUFFER)
        else:
            warnings.warn(
                f"{checkpoint} holds no {REPLAY_BUFFER}: training continues with an empty replay buffer", stacklevel=2
            )
    return model


def _continue(
    run_dir: Path,
    config: TrainConfig,
    checkpoint: Path,
    done: int,
    total: int,
    info: dict[str, Any],
    progress_bar: bool | None,
    verbose: int,
    callbacks: Sequence[BaseCallback],
    safe: bool = True,
    device: str | None = None,
) -> TrainResult:
    # different env seeds than the first segment, the same for the same checkpoint (numpy's seeds are
    # below 2**32, and a run's step count may pass it)
    segment_seed = (config.seed + done) % 2**32
    env = make_training_env(config, segment_seed)
    try:
        model = _load_checkpoint(checkpoint, env, config, safe, device)
    except Exception as error:
        env.close()
        raise RunError(
            f"--resume {run_dir}: cannot load checkpoint {checkpoint}: {type(error).__name__}: {error}"
        ) from None
    model.set_random_seed(segment_seed)
    if config.encoder.path is not None and config.encoder.freeze:
        from recurrent_rl.supervised.encoder import freeze_encoder

        freeze_encoder(model, config.encoder.critic)  # requires_grad is not saved; Adam's moments are
    if total > config.n_timesteps:
        _save_run_config(
            run_dir,
            config.replace(n_timesteps=total),
            f"n_timesteps raised from {config.n_timesteps} to {total} by --resume.",
        )
        config = config.replace(n_timesteps=total)
    resumes = [
        *info.get("resumes", []),
        {
            "from_step": done,
            "checkpoint": checkpoint.name,
            "target": total,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": sys.argv,
            "device": str(model.device),
        },
    ]
    runs.update_run_info(run_dir, resumes=resumes)
    if done >= total:
        # stopped in its last rollout (the steps of that rollout count, but no update learned from
        # them) or before its final evaluation: what is left is the end of a run, no more training
        print(
            f"finishing {run_dir} from {checkpoint.name} ({done} of {total} steps: the target is reached); "
            "writing the final model and evaluation",
            file=sys.stderr,
        )
    else:
        print(f"resuming {run_dir} from {checkpoint.name} ({done} of {total} steps)", file=sys.stderr)
    print(device_line(model, config.device if device is None else device), file=sys.stderr)
    return _learn(
        run_dir,
        model,
        config,
        max(total - done, 0),
        fresh=False,
        progress_bar=progress_bar,
        verbose=verbose,
        callbacks=callbacks,
        best_mean_reward=info.get("best_mean_reward"),
    )


def _save_run_config(run_dir: Path, config: TrainConfig, note: str = "") -> None:
    """Write the run's config.yaml (naming the run's own copy of its encoder, relative to it)."""
    if config.encoder.path is not None:
        config = config.replace(encoder=config.encoder.replace(path=runs.ENCODER))
    header = (
        f"Resolved config of run {run_dir.name} (recurrent_rl {runs.versions()['recurrent_rl']}).\n"
        f"Rerun it: recurrent-rl train --config {run_dir / runs.CONFIG}\n"
        f"Continue it: recurrent-rl train --resume {run_dir}"
    )
    save_config(config, run_dir / runs.CONFIG, header=header + (f"\n{note}" if note else ""))


def _learn(run_dir: Path, model: RecurrentPPO, *args: Any, **kwargs: Any) -> TrainResult:
    """:func:`_learn_steps`; a write that fails for want of room or permission (full disk, read-only
    file system) stops the run with one line, and run.json says so (what was written before stays)."""
    try:
        return _learn_steps(run_dir, model, *args, **kwargs)
    except Exception as error:
        failure = runs.storage_error(error, then=f"then continue: recurrent-rl train --resume {run_dir}")
        if failure is None:
            raise
    step = int(model.num_timesteps)
    latest = runs.latest_checkpoint(run_dir)
    kept = f"latest checkpoint {latest.name}" if latest is not None else "no checkpoint yet"
    try:
        runs.update_run_info(run_dir, status=f"failed at step {step}: {str(failure).partition(';')[0]}")
        noted = ""
    except Exception as error:  # the same disk: run.json keeps its last state
        if runs.storage_error(error) is None:
            raise
        noted = " (run.json could not be updated either)"
    raise StorageError(
        f"training stopped at step {step}: {failure}. The run folder keeps what was written before ({kept}){noted}"
    ) from None


def _learn_steps(
    run_dir: Path,
    model: RecurrentPPO,
    config: TrainConfig,
    steps: int,
    fresh: bool,
    progress_bar: bool | None,
    verbose: int,
    callbacks: Sequence[BaseCallback],
    best_mean_reward: float | None = None,
    on_evaluation: EvaluationHook | None = None,
) -> TrainResult:
    logger = make_logger(run_dir, None if fresh else int(model.num_timesteps), verbose)
    model.set_logger(logger)
    flag = StopFlag()
    evaluation = PeriodicEvaluation(
        lambda: make_env(config.env, config.env_kwargs, packages=config.gym_packages),
        run_dir,
        config.eval.freq,
        config.eval.episodes,
        config.eval.deterministic,
        config.seed + PERIODIC_EVAL_SEED,
        config.env,
        best_mean_reward=float("-inf") if best_mean_reward is None else best_mean_reward,
        resume_step=None if fresh else int(model.num_timesteps),
    )

    def periodic_checkpoint() -> Path | None:
        if not model_is_finite(model):  # a nan or inf already in the parameters: keep the last good ones
            return None
        return write_model_checkpoint(run_dir, model, config.checkpoint.keep)

    checkpoints = PeriodicCheckpoint(periodic_checkpoint, config.checkpoint.freq)
    diagnostics = MemoryDiagnostics(hparams(config) if fresh else None)
    bar = sys.stderr.isatty() if progress_bar is None else progress_bar
    progress = TrainingProgress("bar" if bar else "lines", diagnostics.successes)
    if on_evaluation is None:
        evaluation.on_report = progress.show_evaluation
    else:
        hook = on_evaluation

        def report(step: int, result: EvalReport, best: bool) -> None:
            progress.show_evaluation(step, result, best)
            reason = hook(step, result)
            if reason:
                flag.set(reason)

        evaluation.on_report = report
    callback = CallbackList([StopOnFlag(flag), diagnostics, evaluation, checkpoints, progress, *callbacks])
    runs.update_run_info(run_dir, status="running")
    with stop_on_signals(flag):
        try:
            model.learn(steps, callback=callback, reset_num_timesteps=fresh)
        except EnvProcessError as error:  # an env that raised or died in another process, or a runner that kept failing
            model.logger.close()
            latest = runs.latest_checkpoint(run_dir)
            runs.update_run_info(run_dir, status=f"failed at step {int(model.num_timesteps)}: {error}")
            kept = f"the latest checkpoint is {latest}" if latest is not None else "no checkpoint was written yet"
            raise TrainingError(
                f"{error}; the run stopped at step {int(model.num_timesteps)} ({kept}; fix the env, then continue: "
                f"recurrent-rl train --resume {run_dir})"
            ) from None
        except NonFiniteLossError as error:
            model.logger.close()
            if model_is_finite(model):  # the refused step changed nothing: these are the last good parameters
                path: Path | None = write_model_checkpoint(run_dir, model, keep=0)
            else:  # an earlier step already wrote nan or inf into the parameters or the statistics
                path = runs.latest_checkpoint(run_dir)
            runs.update_run_info(run_dir, status="failed: non-finite loss")
            last = f"checkpoint {path}" if path is not None else "none: no checkpoint was written before it"
            raise TrainingError(f"{error}\nThe last good model is {last}; the run folder is {run_dir}.") from None
        except BaseException as error:
            with contextlib.suppress(OSError):  # a full disk: the last events cannot be flushed
                model.logger.close()
            if runs.storage_error(error) is not None:
                raise  # _learn says what happened
            status = (
                "killed (second Ctrl-C)" if isinstance(error, KeyboardInterrupt) else f"crashed: {type(error).__name__}"
            )
            runs.update_run_info(run_dir, status=status)
            raise
        if flag.is_set():
            model.logger.close()
            path = write_model_checkpoint(run_dir, model, config.checkpoint.keep)
            runs.update_run_info(run_dir, status=f"interrupted ({flag.reason})")
            return TrainResult(
                run_dir, model, int(model.num_timesteps), interrupted=flag.reason, checkpoint=path, config=config
            )
        try:
            return _finish(run_dir, model, config, evaluation, flag)
        finally:
            model.logger.close()


def make_logger(run_dir: Path, resume_step: int | None = None, verbose: int = 0) -> Logger:
    """SB3's logger of a run: TensorBoard events in ``tb/``, ``progress.csv`` (SB3's CSV output
    format), and SB3's table on stdout with ``verbose``. A resumed run (``resume_step``) drops what
    the stopped process logged after its last checkpoint, in both files: it is logged again."""
    tb_dir = run_dir / runs.TENSORBOARD
    tb_dir.mkdir(parents=True, exist_ok=True)
    kept = _progress_rows(run_dir / runs.PROGRESS, resume_step) if resume_step is not None else None
    csv_format = CSVOutputFormat(str(run_dir / runs.PROGRESS))
    if kept:
        header, rows = kept
        writer = csv.writer(csv_format.file, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        csv_format.file.flush()
        csv_format.keys = list(header)
    formats: list[KVWriter] = [TensorBoardOutputFormat(str(tb_dir)), csv_format]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    logger = Logger(str(tb_dir), formats)
    if resume_step is not None:  # what the killed process logged after its last checkpoint is logged again
        _purge_tensorboard_after(logger, resume_step)
    return logger


def _progress_rows(path: Path, until: int) -> tuple[list[str], list[list[str]]] | None:
    """The header and the rows of ``progress.csv`` logged at steps up to ``until``."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as file:
        table = list(csv.reader(file))
    if not table:
        return None
    header, rows = table[0], table[1:]
    column = header.index("time/total_timesteps") if "time/total_timesteps" in header else None
    if column is not None:
        rows = [row for row in rows if not row[column] or float(row[column]) <= until]
    return header, rows


def _purge_tensorboard_after(logger: Any, step: int) -> None:
    """Reopen the logger's TensorBoard writer with ``purge_step``: TensorBoard then drops the events
    logged at steps after ``step`` by the run before it was resumed (the resumed run logs them anew)."""
    from stable_baselines3.common.logger import TensorBoardOutputFormat
    from torch.utils.tensorboard import SummaryWriter

    for output in logger.output_formats:
        if isinstance(output, TensorBoardOutputFormat):
            log_dir = output.writer.log_dir
            output.writer.close()
            output.writer = SummaryWriter(log_dir=log_dir, purge_step=step + 1)


def _finish(
    run_dir: Path, model: RecurrentPPO, config: TrainConfig, evaluation: PeriodicEvaluation, flag: StopFlag
) -> TrainResult:
    """After the last step: checkpoint, final and best models, final evaluation (skipped if a signal came)."""
    if not model_is_finite(model):
        # a nan or inf observation in the last rollout's last step reaches VecNormalize's statistics
        # after the last check of the observations: nothing of this state is saved
        good = runs.latest_checkpoint(run_dir)
        runs.update_run_info(run_dir, status="failed: non-finite model")
        last = f"checkpoint {good}" if good is not None else "none: no checkpoint was written before it"
        raise TrainingError(
            "Training stopped at its end: the policy's parameters or the VecNormalize statistics hold nan or inf "
            "(an observation or reward of the last rollout was not finite; SB3's VecCheckNan finds where), so no "
            f"final model was saved.\nThe last good model is {last}; the run folder is {run_dir}."
        )
    path = write_model_checkpoint(run_dir, model, config.checkpoint.keep)
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        save_vecnormalize(vec_normalize, run_dir / runs.VECNORMALIZE)
    save_model(model, run_dir / runs.MODEL)
    try:
        if evaluation.last_eval_step != model.num_timesteps and not flag.is_set():
            evaluation.evaluate()  # so that best_model.zip exists and the final policy competes too
    finally:
        evaluation._on_training_end()  # closes its env
    report = None
    if config.eval.final_episodes and not flag.is_set():
        env = make_env(config.env, config.env_kwargs, packages=config.gym_packages)
        try:
            report = run_episodes(
                model,
                env,
                config.eval.final_episodes,
                config.eval.deterministic,
                config.seed + FINAL_EVAL_SEED,
                normalize_obs=vec_normalize.normalize_obs if vec_normalize is not None else None,
                env_id=config.env,
            )
        finally:
            env.close()
        report.model, report.num_timesteps = str(run_dir / runs.MODEL), int(model.num_timesteps)
        model.logger.record("eval/final_mean_reward", report.mean_return)
        model.logger.record("time/total_timesteps", int(model.num_timesteps), exclude="tensorboard")
        if report.success_rate is not None:
            model.logger.record("eval/final_success_rate", report.success_rate)
        model.logger.dump(model.num_timesteps)
        save_report(report, run_dir / runs.EVAL_REPORT)
    if report is None and config.eval.final_episodes:  # a signal came before the final evaluation: not finished
        runs.update_run_info(
            run_dir,
            status=f"interrupted ({flag.reason}, before the final evaluation)",
            num_timesteps=int(model.num_timesteps),
        )
        return TrainResult(
            run_dir, model, int(model.num_timesteps), interrupted=flag.reason, checkpoint=path, config=config
        )
    runs.update_run_info(run_dir, status="finished", num_timesteps=int(model.num_timesteps))
    return TrainResult(run_dir, model, int(model.num_timesteps), report=report, checkpoint=path, config=config)
