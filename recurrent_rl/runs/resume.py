"""More steps in an existing run folder: :func:`resume` continues a run from its latest checkpoint
with the same step counter, learning-rate schedule and TensorBoard curves, and finishes a run whose
checkpoint has reached its target without asking for more steps.

Everything about the received checkpoint (config, device, safe copy and its optimizer state,
status) is checked before anything is written; the checkpoint is read from its weights-only copy,
SB3's zip and pickle only with ``trust_pickle``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from recurrent_rl.algorithms import ALGORITHMS, check_resumable
from recurrent_rl.config.devices import check_device
from recurrent_rl.config.loading import load_config
from recurrent_rl.config.train import ConfigError, TrainConfig
from recurrent_rl.errors import TRUST_PICKLE_FLAG, refuse_pickle
from recurrent_rl.io import run_folder as runs
from recurrent_rl.io.run_folder import RunError
from recurrent_rl.ppo.algorithm import check_torch_threads, using_torch_threads
from recurrent_rl.runs.checkpoints import REPLAY_BUFFER
from recurrent_rl.runs.learning import TrainResult, device_line, learn, save_run_config
from recurrent_rl.runs.vec_env import make_training_env


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


def load_checkpoint(checkpoint: Path, env: VecEnv, config: TrainConfig, safe: bool, device: str | None = None) -> Any:
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
        model = load_checkpoint(checkpoint, env, config, safe, device)
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
        save_run_config(
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
    return learn(
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
