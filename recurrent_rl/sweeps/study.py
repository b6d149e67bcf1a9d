"""The study of a sweep and where it lives: an Optuna RDB storage with heartbeats, the sampler and
pruner by name, and :func:`open_study`, which creates a study or continues one made with the same
objective, base config and search space (and refuses, saying which key differs, otherwise).

A trial killed with its process stays RUNNING until its heartbeat is stale (``GRACE_PERIOD``
seconds); then Optuna marks it FAIL and it never counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recurrent_rl.errors import UserInputError
from recurrent_rl.io.run_folder import file_in_the_way
from recurrent_rl.received import shorten
from recurrent_rl.sweeps.space import Param

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
OBJECTIVE = "final evaluation mean return (eval.json), maximized"
SEEDS_OBJECTIVE = "mean over {n} seeds of the final evaluation mean return (eval.json), maximized"
HEARTBEAT = 30  # seconds between a running trial's heartbeats in the storage
GRACE_PERIOD = 120  # a RUNNING trial without a heartbeat for this long is marked FAIL


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserInputError(
            "recurrent-rl tune needs Optuna, which is not installed here: pip install 'recurrent_rl[tune]'"
        ) from None
    return optuna


def default_storage(runs_dir: str | Path, study: str) -> str:
    """``sqlite:///<runs_dir>/tune/<study>.db`` (an absolute path, so Ray workers on this machine find it)."""
    return f"sqlite:///{(Path(runs_dir) / 'tune' / f'{study}.db').resolve()}"


def open_storage(url: str) -> Any:
    """An Optuna RDB storage with heartbeats, or a :class:`UserInputError` saying why it cannot be opened."""
    optuna = require_optuna()
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in ("", ":memory:"):
            if path.is_dir():
                raise UserInputError(f"--storage {url}: {path} is a folder, not a database file")
            blocker = file_in_the_way(path.parent)
            if blocker is not None:
                raise UserInputError(f"--storage {url}: {blocker} is a file, not a folder; put the database elsewhere")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserInputError(f"--storage {url}: cannot create {path.parent} ({error.strerror})") from None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: "experimental"
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE_PERIOD)
    except Exception as error:  # sqlalchemy's ArgumentError, OperationalError, a missing driver module, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(
            f"--storage {url}: cannot open this Optuna storage ({first}). Use an RDB URL such as "
            "sqlite:///path/study.db or postgresql://user@host/db"
        ) from None


def make_sampler(name: str, seed: int | None = None) -> Any:
    optuna = require_optuna()
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserInputError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")


def make_pruner(pruner: Any) -> Any:
    """``median`` (Optuna's MedianPruner after 5 trials, from the 2nd evaluation), ``none``, or an Optuna pruner."""
    optuna = require_optuna()
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise UserInputError(f"unknown pruner {pruner!r}: use one of {', '.join(PRUNERS)}")


@dataclass
class StudySpec:
    """What each worker needs to run trials (picklable: it travels to processes and Ray tasks)."""

    study: str
    storage: str
    config: dict[str, Any]  # the base TrainConfig.to_dict()
    space: dict[str, Param]
    trials_dir: str
    trials: int
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: Any = "median"
    seed: int | None = None
    worker_trials: int | None = None  # this worker's share of the trials still to run
    trial_seeds: int = 1  # seeds per trial: the objective is the mean of their final returns
    restarts: int = 0  # how often this worker's share was taken over after its process was killed
    verbose: bool = False  # each trial's parameters when it starts and its training's progress lines

    @property
    def objective(self) -> str:
        return OBJECTIVE if self.trial_seeds == 1 else SEEDS_OBJECTIVE.format(n=self.trial_seeds)


def _study_attrs(spec: StudySpec) -> dict[str, Any]:
    return {
        "objective": spec.objective,
        "config": json.dumps(spec.config, sort_keys=True),
        "space": json.dumps({name: p.to_yaml() for name, p in spec.space.items()}, sort_keys=True),
        "trials_dir": spec.trials_dir,
    }


def _with_later_keys(stored: Any, ours: dict[str, Any]) -> Any:
    """A study's stored base config (JSON text) with the keys that configs gained after it was made
    (``algo``, ``gym_packages``, ...) at their defaults: a study made before them continues when
    this base config leaves them at the defaults."""
    from recurrent_rl.config.train import TrainConfig

    try:
        values = json.loads(stored)
        defaults = TrainConfig.from_dict({"env": ours["env"], "algo": ours.get("algo", "ppo")}).to_dict()
    except (TypeError, ValueError, KeyError):  # not a config this package wrote: compared as it is
        return stored
    if not isinstance(values, dict):
        return stored
    later = {key: json.loads(json.dumps(value)) for key, value in defaults.items() if key not in values}
    return json.dumps({**later, **values}, sort_keys=True)


def open_study(spec: StudySpec) -> Any:
    """Create the study, or load it when it exists with the same objective, base config and space."""
    optuna = require_optuna()
    storage = open_storage(spec.storage)
    attrs = _study_attrs(spec)
    exists = spec.study in [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if exists:
        study = optuna.load_study(
            study_name=spec.study,
            storage=storage,
            sampler=make_sampler(spec.sampler, spec.seed),
            pruner=make_pruner(spec.pruner),
        )
        theirs = dict(study.user_attrs)
        theirs["config"] = _with_later_keys(theirs.get("config"), spec.config)
        if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
            directions = [d.name for d in study.directions]
            raise UserInputError(
                f"study {spec.study!r} in {spec.storage} optimizes another objective "
                f"({directions}); nothing was changed. Use another --study"
            )
        recorded = {**theirs, "config": _with_defaults(theirs.get("config"))}
        for key, label in (("objective", "objective"), ("config", "base config"), ("space", "search space")):
            if recorded.get(key) != attrs[key]:
                diff = _difference(theirs.get(key), attrs[key]) if key != "objective" else theirs.get(key)
                raise UserInputError(
                    f"study {spec.study!r} in {spec.storage} was made with another {label} ({diff}); nothing was "
                    "changed. Resume it with the same --preset/--config, --set and --space, or use another --study"
                )
        return study
    trials_dir = Path(spec.trials_dir)
    if trials_dir.is_dir() and any(trials_dir.iterdir()):
        raise UserInputError(
            f"{trials_dir} holds trials of a study that {spec.storage} does not have; nothing was "
            "changed. Use another --study, or --storage where that study is"
        )
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study,
        direction="maximize",
        sampler=make_sampler(spec.sampler, spec.seed),
        pruner=make_pruner(spec.pruner),
    )
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


def _with_defaults(recorded: Any) -> Any:
    """A study's recorded base config with the keys added to the config since given their defaults
    (a study made before a key existed trained with what its default does), as JSON; as read when
    it is not a config."""
    from recurrent_rl.config.train import TrainConfig

    try:  # what the study's database holds is data like any file's
        values = json.loads(recorded)
        return json.dumps(TrainConfig.from_dict(values).to_dict(), sort_keys=True)
    except Exception:  # not JSON, not a config: compared as it is, and reported as different
        return recorded


def _difference(theirs: str | None, ours: str) -> str:
    if theirs is None:
        return "not recorded"
    try:  # what the study's database holds is data like any file's
        a, b = json.loads(theirs), json.loads(ours)
    except (ValueError, RecursionError):
        return "not readable"
    if not isinstance(a, dict) or not isinstance(b, dict):
        return f"{shorten(a)} there"
    keys = sorted((k for k in set(a) | set(b) if a.get(k) != b.get(k)), key=str)
    return ", ".join(f"{shorten(k)}: {shorten(a.get(k))} there, {shorten(b.get(k))} here" for k in keys[:3])


def finished_trials(study: Any) -> int:
    optuna = require_optuna()
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))
