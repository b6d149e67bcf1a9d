"""The learning loop of a run, shared by a new run (:mod:`recurrent_rl.runs.training`) and a
resumed one (:mod:`recurrent_rl.runs.resume`).

:func:`learn` trains a model in its run folder: SB3's logger (TensorBoard events and
``progress.csv``, cut back to the checkpoint on a resume), the run's callbacks (memory
diagnostics, periodic evaluation with the best model, periodic checkpoints, the learning signal on
the terminal), SIGINT/SIGTERM turned into a stop after the current step with a checkpoint, the
errors a user can act on (an env that failed in another process, a non-finite loss, a full disk)
turned into one line with the run folder intact, and at the end the final model, checkpoint and
evaluation report.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
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

from recurrent_rl.config.train import TrainConfig, save_config
from recurrent_rl.errors import NonFiniteLossError
from recurrent_rl.io import run_folder as runs
from recurrent_rl.io.run_folder import StorageError
from recurrent_rl.nets.devices import choose_device
from recurrent_rl.ppo.algorithm import RecurrentPPO
from recurrent_rl.runners.subproc import EnvProcessError
from recurrent_rl.runs.callbacks import (
    MemoryDiagnostics,
    PeriodicCheckpoint,
    PeriodicEvaluation,
    StopFlag,
    StopOnFlag,
    TrainingProgress,
)
from recurrent_rl.runs.checkpoints import save_model, save_vecnormalize, write_model_checkpoint
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


def device_line(model: RecurrentPPO, asked: str) -> str:
    """The run's first line: the device it trains on and why (``auto``'s rule, or what was asked)."""
    if asked == "auto":
        return choose_device(model.observation_space, model.policy_kwargs).line()
    return f"device: {model.device} (device: {asked} in the config or on the command line)"


# called after each periodic evaluation with the step and the report; a returned string stops the
# run there (a checkpoint is written and the run's status is "interrupted (<string>)"), as a
# hyperparameter search prunes a trial (recurrent_rl.sweeps.tune)
EvaluationHook = Callable[[int, EvalReport], "str | None"]


def save_run_config(run_dir: Path, config: TrainConfig, note: str = "") -> None:
    """Write the run's config.yaml (naming the run's own copy of its encoder, relative to it)."""
    if config.encoder.path is not None:
        config = config.replace(encoder=config.encoder.replace(path=runs.ENCODER))
    header = (
        f"Resolved config of run {run_dir.name} (recurrent_rl {runs.versions()['recurrent_rl']}).\n"
        f"Rerun it: recurrent-rl train --config {run_dir / runs.CONFIG}\n"
        f"Continue it: recurrent-rl train --resume {run_dir}"
    )
    save_config(config, run_dir / runs.CONFIG, header=header + (f"\n{note}" if note else ""))


def learn(run_dir: Path, model: RecurrentPPO, *args: Any, **kwargs: Any) -> TrainResult:
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
                raise  # learn says what happened
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
