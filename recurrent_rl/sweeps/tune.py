"""Hyperparameter search with Optuna (``recurrent-rl tune``): a study of ordinary training runs.

Each trial samples the search space (:mod:`recurrent_rl.sweeps.space`), trains the resulting
config into an ordinary run folder ``<runs>/tune/<study>/trial<NNNN>/``, reports every periodic
evaluation's mean return to Optuna (step = the evaluation's index, so trials with different
rollout sizes compare at the same points) and stops early when the pruner says so (status
``interrupted (pruned)``, Optuna state PRUNED). The objective is the final evaluation's mean
return (``eval.json``), maximised.

With ``trial_seeds=N`` (``--trial-seeds N``) a trial trains its config on N seeds in turn (the
base config's seed, +1, ...; run folders ``trial<NNNN>/seed<S>/``) and its objective is the mean
of their final returns: a search for settings that work on most seeds rather than on one. The
running mean after each seed is what the pruner sees (step = seeds done).

The study lives in a database: by default the SQLite file ``<runs>/tune/<study>.db``; any Optuna
RDB storage URL works (``postgresql://...``, ``mysql://...``). Running the same command with the
same ``--study`` continues it up to ``--trials`` finished (complete or pruned) trials; a trial
killed with its process stays RUNNING until its heartbeat is stale, then it is marked FAIL, and it
never counts (:mod:`recurrent_rl.sweeps.study`: the storage, the sampler, the pruner).

When the study is done: the best trial's config as a preset (``best.yaml``, which
``recurrent-rl train --config`` takes), a summary table, and the parameter-importance figure
(``importance.png``, :mod:`recurrent_rl.sweeps.importance`).

Trials run in this process (``workers=1``), in several local processes, or as Ray tasks, all
sharing the storage: each worker asks the study for the next trial, as Optuna's distributed
optimisation does (https://optuna.readthedocs.io/en/stable/tutorial/10_key_features/004_distributed.html).
A local worker process that is killed (SIGKILL, the out-of-memory killer) has its running trial
marked FAIL at once and is replaced by a new worker for the rest of its share, up to
``RESTARTS`` times per worker; the others go on.

Every option is checked before the study's database or folder is created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recurrent_rl.errors import UserInputError
from recurrent_rl.io.run_folder import check_can_create
from recurrent_rl.received import shorten
from recurrent_rl.sweeps.importance import plot_importance
from recurrent_rl.sweeps.space import check_space, fit_space, load_space
from recurrent_rl.sweeps.study import (
    OBJECTIVE,
    StudySpec,
    default_storage,
    finished_trials,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    require_optuna,
)

BEST_PRESET = "best.yaml"
IMPORTANCE = "importance.png"
SUMMARY = "summary.json"
RESTARTS = 2  # replacements of one killed local worker
MAX_TRIAL_SEEDS = 100


def trial_config(spec: StudySpec, params: Mapping[str, Any]) -> Any:
    from recurrent_rl.config.train import TrainConfig
    from recurrent_rl.sweeps.space import apply_params

    try:
        return TrainConfig.from_dict(apply_params(spec.config, params))
    except (TypeError, KeyError, ValueError) as error:  # parameters read back from a study's database
        if isinstance(error, UserInputError):
            raise
        raise UserInputError(
            f"study {spec.study!r} in {spec.storage} holds parameters {shorten(dict(params))} that do not fit its "
            f"search space ({type(error).__name__}): use another --study"
        ) from None


def _objective(spec: StudySpec, storage_failures: list[Exception] | None = None) -> Any:
    """The trial function; a full disk or a read-only folder in a trial stops the study (the next
    trials would fail the same way) and is added to ``storage_failures``."""
    from recurrent_rl.io.run_folder import StorageError

    train_trial = _objective_of(spec)

    def objective(trial: Any) -> float:
        try:
            return train_trial(trial)
        except StorageError as error:
            if storage_failures is not None:
                storage_failures.append(error)
            trial.study.stop()
            raise

    return objective


def _objective_of(spec: StudySpec) -> Any:
    optuna = require_optuna()
    from recurrent_rl.runs.training import train

    def objective(trial: Any) -> float:
        trial.set_user_attr("worker_pid", os.getpid())  # a killed worker's trials are found by it
        params = {name: param.suggest(trial) for name, param in spec.space.items()}
        config = trial_config(spec, params)
        name = f"trial{trial.number:04d}"
        trial.set_user_attr("run_dir", str(Path(spec.trials_dir) / name))
        evaluations: list[float] = []

        def report(step: int, result: Any) -> str | None:
            evaluations.append(float(result.mean_return))
            trial.report(float(result.mean_return), len(evaluations))
            return "pruned" if trial.should_prune() else None

        if spec.verbose:
            print(f"trial {trial.number}: {json.dumps(params)}", file=sys.stderr)
        # without --verbose a trial is the one line _print_trial writes when it ends: its training's
        # progress lines (stdout) are left out
        quiet = contextlib.nullcontext() if spec.verbose else contextlib.redirect_stdout(io.StringIO())
        with quiet:
            if spec.trial_seeds > 1:
                return _over_seeds(trial, config, Path(spec.trials_dir) / name, spec.trial_seeds)
            result = train(config, spec.trials_dir, name, progress_bar=False, on_evaluation=report)
        if result.interrupted == "pruned":
            raise optuna.TrialPruned(f"pruned after evaluation {len(evaluations)} ({evaluations[-1]:.1f})")
        if result.interrupted:  # SIGINT / SIGTERM: the trial fails, the study stops, --study resumes it
            raise KeyboardInterrupt(result.interrupted)
        if result.report is not None:
            return float(result.report.mean_return)
        if evaluations:
            return evaluations[-1]
        raise UserInputError("the config has neither a final evaluation (eval.final_episodes) nor periodic ones")

    return objective


def _over_seeds(trial: Any, config: Any, folder: Path, seeds: int) -> float:
    """Train ``config`` on ``seeds`` seeds into ``folder/seed<S>/``; the mean final return (pruned
    on the running mean after each seed)."""
    optuna = require_optuna()
    from recurrent_rl.runs.training import train

    folder.mkdir(parents=True, exist_ok=True)
    finals: list[float] = []
    for index in range(seeds):
        seed = config.seed + index
        result = train(config.replace(seed=seed), folder, f"seed{seed}", progress_bar=False)
        if result.interrupted:  # SIGINT / SIGTERM: the trial fails, the study stops, --study resumes it
            raise KeyboardInterrupt(result.interrupted)
        if result.report is None:
            raise UserInputError("--trial-seeds needs a final evaluation (eval.final_episodes > 0)")
        finals.append(float(result.report.mean_return))
        trial.set_user_attr("seed_returns", finals)
        mean = sum(finals) / len(finals)
        trial.report(mean, index + 1)
        if index + 1 < seeds and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {index + 1} of {seeds} seeds (mean {mean:.1f})")
    return sum(finals) / len(finals)


def run_worker(spec: StudySpec) -> int:
    """Run trials of the study until it has ``spec.trials`` finished ones (or the timeout); return how many ran."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=spec.study,
        storage=open_storage(spec.storage),
        sampler=make_sampler(spec.sampler, spec.seed),
        pruner=make_pruner(spec.pruner),
    )
    remaining = spec.trials - finished_trials(study)
    if spec.worker_trials is not None:
        remaining = min(remaining, spec.worker_trials)
    if remaining <= 0:
        return 0
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ran: list[int] = []  # this worker's trials (other workers add theirs to the same study meanwhile)
    failures: list[Exception] = []
    logging.getLogger("optuna.study._optimize").addFilter(_no_traceback_for_user_errors)
    try:
        study.optimize(
            _objective(spec, failures),
            n_trials=remaining,
            timeout=spec.timeout,
            catch=(ValueError,),
            callbacks=[
                optuna.study.MaxTrialsCallback(spec.trials, states=states),
                _print_trial,
                lambda study, trial: ran.append(trial.number),
            ],
            gc_after_trial=True,
        )
    except Exception as error:  # the study's own database on a full disk ("database or disk is full")
        from recurrent_rl.io.run_folder import storage_error

        failure = storage_error(error)
        if failure is None:
            raise
        raise failure from None
    if failures:
        raise failures[0]
    return len(ran)


def _no_traceback_for_user_errors(record: logging.LogRecord) -> bool:
    """Optuna logs a failed trial's exception with its traceback; an error of the user's input, a full
    disk included, is one line (its message is in the log line already)."""
    if record.exc_info and isinstance(record.exc_info[1], UserInputError):
        record.exc_info, record.exc_text = None, None
    return True


def _print_trial(study: Any, trial: Any) -> None:
    """One line per finished trial: its number, state, value, parameters and run folder."""
    value = f"{trial.value:.2f}" if trial.value is not None else "-"
    params = "  ".join(f"{name}={_short(value)}" for name, value in trial.params.items())
    print(
        f"trial {trial.number} {trial.state.name.lower()}: {value}  {params}  ({trial.user_attrs.get('run_dir', '')})",
        flush=True,
    )


def _replace_dead_worker(spec: StudySpec, died: Any) -> StudySpec | None:
    """After a local worker process died: mark its running trials FAIL (at once, rather than when
    their heartbeat goes stale), and a spec for the rest of its share (None: nothing left, or it was
    replaced ``RESTARTS`` times already)."""
    optuna = require_optuna()
    storage = open_storage(spec.storage)
    study_id = storage.get_study_id_from_name(spec.study)
    running = optuna.trial.TrialState.RUNNING
    failed, ran = [], 0
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        if trial.user_attrs.get("worker_pid") != died.pid:
            continue
        if trial.state == running:  # killed with it: failed, and not one of its share's trials
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            failed.append(trial.number)
        else:
            ran += 1
    left = (spec.worker_trials or 0) - ran
    restarts = spec.restarts + 1
    again = restarts <= RESTARTS and left > 0
    then = f"a new worker runs its {left} trial(s) left" if again else "its share of the trials is not run"
    print(f"tune: {died}; trial(s) {failed or 'none'} marked failed; {then}", file=sys.stderr)
    return dataclasses.replace(spec, worker_trials=left, restarts=restarts) if again else None


@dataclass
class TuneResult:
    study: Any
    folder: Path
    best_preset: Path | None
    importance: Path | None
    ran: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    storage: str = ""
    objective: str = OBJECTIVE

    def table(self, top: int = 10) -> str:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        lines = [f"study {self.study.study_name}: {len(self.rows)} trials ({states}); {self.objective}"]
        ranked = sorted((r for r in self.rows if r["value"] is not None), key=lambda r: -r["value"])[:top]
        names = sorted({k for r in ranked for k in r["params"]})
        header = ["trial", "state", "value", "seconds", *names]
        cells = [header] + [
            [
                str(r["number"]),
                r["state"].lower(),
                f"{r['value']:.2f}",
                f"{r['seconds']:.0f}",
                *(_short(r["params"].get(n)) for n in names),
            ]
            for r in ranked
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def run_study(
    config: Any,
    trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    sampler: str = "tpe",
    pruner: Any = "median",
    space: str | Path | None = None,
    runs_dir: str | Path = "runs",
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    seed: int | None = None,
    trial_seeds: int = 1,
    verbose: bool = False,
    backend: str | None = None,
    workers_per_gpu: int | None = None,
) -> TuneResult:
    """Tune ``config`` (a :class:`~recurrent_rl.config.train.TrainConfig`) up to ``trials`` finished trials.

    :param storage: an Optuna storage URL (default: ``sqlite:///<runs_dir>/tune/<study>.db``)
    :param study: the study's name (default: ``<env>-<memory>``); an existing study continues
    :param sampler: ``tpe`` or ``random``; :param pruner: ``median``, ``none`` or an Optuna pruner
    :param space: a YAML file whose entries replace the memory type's default search space
    :param workers: trials at a time (local processes; with ``executor="ray"``, Ray tasks)
    :param workers_per_gpu: workers sharing one GPU when ``config.device`` is CUDA (see
        :func:`recurrent_rl.sweeps.executors.run_tasks`)
    :param timeout: seconds after which no new trial starts (per worker)
    :param verbose: print each trial's parameters when it starts and its training's progress lines
        (else one line per trial, when it ends)
    :param trial_seeds: seeds per trial (the config's seed and the next ones); the objective is the
        mean of their final returns
    """
    from recurrent_rl.sweeps.executors import executor_argument

    executor = executor_argument(executor, backend, "run_study")
    optuna = require_optuna()
    from recurrent_rl.config.train import MAX_SEED
    from recurrent_rl.io import run_folder as folders

    if config.algo == "sac":  # the search space is RecurrentPPO's: rollout and minibatch sizes, epochs, GAE
        raise UserInputError(
            "tune searches RecurrentPPO's settings (n_steps, minibatches, n_epochs, gae_lambda, ...), which algo sac "
            "does not have; tuning RecurrentSAC is not supported yet. Compare RecurrentSAC settings with train --seeds "
            "(several seeds per config) instead"
        )
    if trials < 1:
        raise UserInputError(f"--trials must be at least 1, got {trials}")
    if workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {workers}")
    if executor == "local":
        from recurrent_rl.sweeps.executors import check_local_workers

        check_local_workers(workers)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UserInputError(f"--timeout must be positive, a finite number of seconds, got {timeout}")
    if not 1 <= trial_seeds <= MAX_TRIAL_SEEDS:
        raise UserInputError(f"--trial-seeds must be in [1, {MAX_TRIAL_SEEDS}], got {trial_seeds}")
    if config.seed + trial_seeds - 1 > MAX_SEED:
        raise UserInputError(f"--trial-seeds {trial_seeds} from seed {config.seed} passes the largest seed, {MAX_SEED}")
    if seed is not None and not 0 <= seed <= MAX_SEED - workers:
        raise UserInputError(
            f"--sampler-seed must be in [0, {MAX_SEED - workers}] (worker i uses the seed + i), got {seed}"
        )
    if trial_seeds > 1 and not config.eval.final_episodes:
        raise UserInputError("--trial-seeds compares the seeds' final evaluations: set eval.final_episodes > 0")
    if isinstance(sampler, str):
        make_sampler(sampler)
    make_pruner(pruner)
    if executor == "ray":
        from recurrent_rl.sweeps.executors import require_ray

        require_ray()
    name = study or f"{re.sub(r'[^A-Za-z0-9._-]+', '-', config.env)}-{config.memory}"
    if not folders.is_plain_name(name):
        raise UserInputError(
            f"--study {shorten(name)} is not a plain name: use letters, digits and . _ + = - (no slashes); "
            "it names the folder <runs-dir>/tune/<study>/ of the trials"
        )
    if len(name) > folders.MAX_RUN_NAME:
        raise UserInputError(
            f"--study {shorten(name)} is too long ({len(name)} characters, at most {folders.MAX_RUN_NAME}): "
            "it names the folder <runs-dir>/tune/<study>/ of the trials"
        )
    base = config.to_dict()
    search = fit_space(load_space(config.memory, space), base)
    check_space(search, base)
    check_can_create(runs_dir)
    if executor == "ray":  # reach the cluster (or fail) before the study is created
        from recurrent_rl.sweeps.executors import connect

        connect(address, num_cpus=workers if address in (None, "local") else None)
    trials_dir = Path(runs_dir) / "tune" / name
    spec = StudySpec(
        name,
        storage or default_storage(runs_dir, name),
        base,
        search,
        str(trials_dir.resolve()),
        trials,
        timeout,
        sampler,
        pruner,
        seed,
        trial_seeds=trial_seeds,
        verbose=verbose,
    )
    handle = open_study(spec)
    trials_dir.mkdir(parents=True, exist_ok=True)
    done = finished_trials(handle)
    if done >= trials:
        print(
            f"study {name} already has {done} finished trials (--trials {trials}): nothing to run; "
            "raise --trials to run more",
            file=sys.stderr,
        )
        ran = 0
    elif workers == 1 and executor == "local":
        ran = run_worker(spec)
    else:
        from recurrent_rl.sweeps.executors import run_tasks

        # each worker its share of what is left, so that together they run no more than asked
        left = trials - done
        shares = [left // workers + (i < left % workers) for i in range(min(workers, left))]
        # each worker its own sampler seed: with one seed for all, they would propose the same trials
        specs = [
            dataclasses.replace(spec, worker_trials=share, seed=None if seed is None else seed + i)
            for i, share in enumerate(shares)
        ]
        counts = run_tasks(
            run_worker,
            specs,
            executor=executor,
            workers=len(specs),
            address=address,
            replace=_replace_dead_worker,
            device=config.device,
            workers_per_gpu=workers_per_gpu,
        )
        ran = sum(count for count in counts if isinstance(count, int))
    handle = optuna.load_study(study_name=name, storage=open_storage(spec.storage))
    return _conclude(spec, handle, trials_dir, ran)


def _conclude(spec: StudySpec, study: Any, folder: Path, ran: int) -> TuneResult:
    optuna = require_optuna()
    from recurrent_rl.atomic import atomic_write_json
    from recurrent_rl.config.train import save_config

    rows = []
    for t in study.get_trials(deepcopy=False):
        ended, started = t.datetime_complete, t.datetime_start
        seconds = (ended - started).total_seconds() if ended and started else 0.0
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": dict(t.params),
                "seconds": seconds,
                "run_dir": t.user_attrs.get("run_dir"),
                "seed_returns": t.user_attrs.get("seed_returns"),
            }
        )
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    best_path = importance = None
    summary: dict[str, Any] = {
        "study": spec.study,
        "storage": spec.storage,
        "objective": spec.objective,
        "trials": rows,
    }
    if complete:
        best = study.best_trial
        config = trial_config(spec, best.params)
        config = config.replace(description=f"tuned: study {spec.study}, trial {best.number}, {best.value:.2f}")
        best_path = folder / BEST_PRESET
        if config.encoder.path is not None:  # a config file names files beside it: the study keeps a copy
            from recurrent_rl.io.run_folder import ENCODER, atomic_open

            with atomic_open(folder / ENCODER, "wb") as file:
                file.write(Path(config.encoder.path).read_bytes())
            config = config.replace(encoder=config.encoder.replace(path=ENCODER))
        save_config(
            config,
            best_path,
            header=(
                f"Best trial ({best.number}, {spec.objective}: {best.value:.2f}) of study {spec.study} "
                f"in {spec.storage}.\n"
                f"Train it: recurrent-rl train --config {best_path}"
            ),
        )
        summary["best"] = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
            "preset": str(best_path),
        }
        importance = plot_importance(study, folder / IMPORTANCE)
    atomic_write_json(folder / SUMMARY, json.loads(json.dumps(summary, default=str)))
    return TuneResult(study, folder, best_path, importance, ran, rows, spec.storage, spec.objective)
