"""Many seeds of one config: parallel runs and their aggregate report (``recurrent-rl train --seeds``).

Each seed trains into an ordinary run folder ``<group>/seed<N>/`` (``recurrent-rl evaluate`` and
``train --resume`` work on it), in its own process (:mod:`recurrent_rl.sweeps.executors`: local
processes, one per core by default, or Ray tasks). The group folder then holds the report:

- ``seeds.json``: per-seed final returns (the final evaluation, ``eval.json``), their mean, median and
  IQM with stratified-bootstrap 95% intervals (:mod:`recurrent_rl.sweeps.stats`), the success rate
  where the env reports one, the count of seeds at or above ``threshold`` when given, and each
  seed's learning curve (the periodic evaluations' mean returns);
- ``curves.png``: those learning curves, each seed's line and the median with the spread over seeds.
"""

from __future__ import annotations

import math
import re
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recurrent_rl.errors import UserInputError
from recurrent_rl.io.run_folder import check_can_create
from recurrent_rl.received import shorten

REPORT = "seeds.json"
CURVES = "curves.png"
MAX_SEEDS = 1000  # runs in one group: each is a training run of its own
_SPEC = re.compile(r"^\s*(\d{1,20})\s*(?:-\s*(\d{1,20})\s*)?$")


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` (both ends included), ``"0,3,5"``, or both mixed (``"0-4,10"``); each seed once.

    At most :data:`MAX_SEEDS` seeds, each in ``[0, MAX_SEED]`` (the range of
    :class:`~recurrent_rl.config.train.TrainConfig`'s seed); checked in time linear in the text,
    before any range is expanded.
    """
    from recurrent_rl.config.train import MAX_SEED

    shown = shorten(str(text))
    ranges: list[tuple[int, int]] = []
    count = 0
    for part in str(text).split(","):
        match = _SPEC.match(part)
        if not match:
            raise UserInputError(f"--seeds {shown}: expected seeds like 0-9, 0,3,5 or 0-4,10 (non-negative integers)")
        first, last = int(match[1]), int(match[2]) if match[2] is not None else int(match[1])
        if last < first:
            raise UserInputError(
                f"--seeds {shown}: the range {first}-{last} is empty (write it low-high, e.g. {last}-{first})"
            )
        if last > MAX_SEED:
            raise UserInputError(f"--seeds {shown}: seed {last} is out of range; seeds are integers in [0, {MAX_SEED}]")
        count += last - first + 1
        if count > MAX_SEEDS:
            raise UserInputError(
                f"--seeds {shown}: more than {MAX_SEEDS} seeds (each one a training run); run fewer at a time"
            )
        ranges.append((first, last))
    seeds = [seed for first, last in ranges for seed in range(first, last + 1)]
    seen: set[int] = set()
    repeated = sorted({seed for seed in seeds if seed in seen or seen.add(seed)})  # type: ignore[func-returns-value]
    if repeated:
        raise UserInputError(f"--seeds {shown}: seed(s) {shorten(repeated)} appear more than once")
    return seeds


@dataclass
class SeedResult:
    seed: int
    run_dir: str
    final_return: float | None = None
    success_rate: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (env step, mean return) per evaluation
    host: str = ""
    error: str | None = None


def _train_seed(job: dict[str, Any]) -> SeedResult:
    """Train one seed (in a worker process or Ray task); errors are returned, not raised."""
    from recurrent_rl.config.train import TrainConfig
    from recurrent_rl.runs.training import train

    config = TrainConfig.from_dict(job["config"]).replace(seed=job["seed"])
    curve: list[tuple[int, float]] = []
    run_dir = str(Path(job["group"]) / f"seed{job['seed']}")
    result = SeedResult(job["seed"], run_dir, curve=curve, host=socket.gethostname())

    def record(step: int, report: Any) -> None:
        curve.append((int(step), float(report.mean_return)))

    try:
        trained = train(config, job["group"], f"seed{job['seed']}", progress_bar=False, on_evaluation=record)
    except Exception as error:  # one seed failing leaves the others' runs and the report
        result.error = f"{type(error).__name__}: {error}"
        if isinstance(error, UserInputError):  # a full disk, a config the env refuses: one line says it
            print(f"seed {job['seed']}: error: {error}", file=sys.stderr)
        else:
            traceback.print_exc(file=sys.stderr)
        return result
    if trained.interrupted:
        result.error = f"interrupted ({trained.interrupted})"
    elif trained.report is not None:
        result.final_return = float(trained.report.mean_return)
        result.success_rate = trained.report.success_rate
    elif curve:  # no final evaluation configured: the last periodic one
        result.final_return = curve[-1][1]
    return result


@dataclass
class SeedsReport:
    """The aggregate of a many-seed run (``seeds.json``)."""

    group: Path
    results: list[SeedResult]
    summary: dict[str, Any]

    def table(self) -> str:
        lines = [f"{'seed':>6}  {'final return':>12}  {'success':>7}  run folder"]
        for r in self.results:
            final = f"{r.final_return:12.1f}" if r.final_return is not None else f"{'failed':>12}"
            success = f"{r.success_rate:7.2f}" if r.success_rate is not None else f"{'-':>7}"
            lines.append(f"{r.seed:>6}  {final}  {success}  {r.run_dir}" + (f"  ({r.error})" if r.error else ""))
        s = self.summary
        if s.get("seeds_finished"):
            lines.append(
                f"over {s['seeds_finished']} of {len(self.results)} seeds, with 95% stratified-bootstrap intervals:"
            )
            for name in ("mean", "median", "iqm"):
                e = s[name]
                lines.append(
                    f"  {name.upper() if name == 'iqm' else name:>6}  {e['value']:.1f}  "
                    f"[{e['low']:.1f}, {e['high']:.1f}]"
                )
            if s.get("success_rate") is not None:
                lines.append(f"  success rate (mean over seeds)  {s['success_rate']:.2f}")
            if s.get("threshold") is not None:
                lines.append(f"  seeds at or above {s['threshold']:g}: {s['at_threshold']} of {s['seeds_finished']}")
        return "\n".join(lines)


def summarize(results: Sequence[SeedResult], threshold: float | None = None, reps: int = 2000) -> dict[str, Any]:
    """Mean, median, IQM (with intervals), success rate and threshold count of the finished seeds."""
    from recurrent_rl.sweeps.stats import aggregate

    finals = [r.final_return for r in results if r.final_return is not None]
    summary: dict[str, Any] = {"seeds_finished": len(finals), "threshold": threshold}
    if finals:
        summary.update({name: e.to_dict() for name, e in aggregate(finals, reps=reps).items()})
        rates = [r.success_rate for r in results if r.success_rate is not None]
        summary["success_rate"] = float(sum(rates) / len(rates)) if rates else None
        if threshold is not None:
            summary["at_threshold"] = sum(f >= threshold for f in finals)
    return summary


def group_name(env: str, memory: str, seeds: Sequence[int]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env_part = re.sub(r"[^A-Za-z0-9._-]+", "-", env)
    spread = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
    return f"{env_part}__{memory}__seeds{spread}__{stamp}"


def run_seeds(
    config: Any,
    seeds: Sequence[int],
    runs_dir: str | Path = "runs",
    name: str | None = None,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    threshold: float | None = None,
    backend: str | None = None,
) -> SeedsReport:
    """Train ``config`` once per seed into ``runs_dir/<name>/seed<N>/`` and write the aggregate report.

    :param workers: parallel runs (default: one per CPU here; with Ray, the cluster's CPUs)
    :param executor: ``local`` (processes on this machine) or ``ray`` (Ray tasks; ``address`` as
        :func:`recurrent_rl.sweeps.executors.connect` takes it)
    :param threshold: also count the seeds whose final return is at least this
    """
    from recurrent_rl.sweeps.executors import executor_argument

    executor = executor_argument(executor, backend, "run_seeds")
    from recurrent_rl.io import run_folder as folders
    from recurrent_rl.sweeps.executors import WorkerDied, check_local_workers, run_tasks

    seeds = list(seeds)
    if not seeds:
        raise UserInputError("--seeds: no seeds to run")
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {workers}")
    if executor == "local":
        check_local_workers(workers)
    if threshold is not None and not math.isfinite(threshold):
        raise UserInputError(f"--threshold must be a finite number (a return), got {threshold}")
    for seed in (min(seeds), max(seeds)):  # every seed's config is valid, before the group folder exists
        config.replace(seed=seed)
    name = name or group_name(config.env, config.memory, seeds)
    folders.check_run_name(name)
    group = (Path(runs_dir) / name).resolve()  # absolute: Ray workers do not share this cwd
    if group.exists():
        raise folders.RunError(f"{group} already exists; nothing was changed. Choose another --name.")
    check_can_create(runs_dir)
    if executor == "ray":  # reach the cluster (or fail) before anything is written
        from recurrent_rl.sweeps.executors import connect

        connect(address, num_cpus=workers if address in (None, "local") else None)
    try:
        group.mkdir(parents=True)
    except OSError as error:
        raise folders.RunError(f"cannot create {group} ({error.strerror}): choose another --runs-dir") from None
    jobs = [{"config": config.to_dict(), "seed": seed, "group": str(group)} for seed in seeds]
    results: list[SeedResult] = []
    for job, result in zip(jobs, run_tasks(_train_seed, jobs, executor=executor, workers=workers, address=address)):
        if isinstance(result, WorkerDied):  # killed: its run folder says so, the other seeds count
            run_dir = group / f"seed{job['seed']}"
            if (run_dir / folders.RUN_INFO).is_file():
                folders.mark_killed(run_dir, str(result))
            result = SeedResult(job["seed"], str(run_dir), error=str(result))
        results.append(result)
    report = SeedsReport(group, results, summarize(results, threshold))
    write_report(report, config)
    return report


def write_report(report: SeedsReport, config: Any = None) -> None:
    """``seeds.json`` and ``curves.png`` in the group folder."""
    from recurrent_rl.atomic import atomic_write_json

    data = {
        "env": getattr(config, "env", None),
        "memory": getattr(config, "memory", None),
        "n_timesteps": getattr(config, "n_timesteps", None),
        "summary": report.summary,
        "seeds": [
            {
                "seed": r.seed,
                "run_dir": r.run_dir,
                "final_return": r.final_return,
                "success_rate": r.success_rate,
                "host": r.host,
                "error": r.error,
                "curve": [list(point) for point in r.curve],
            }
            for r in report.results
        ],
    }
    atomic_write_json(report.group / REPORT, data)
    if any(r.curve for r in report.results):
        plot_curves(report.results, report.group / CURVES, title=f"{data['env']} {data['memory']}")


def plot_curves(results: Sequence[SeedResult], path: Path, title: str = "") -> None:
    """Each seed's periodic-evaluation curve, the median over seeds and the band between the min and max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    curves = [r.curve for r in results if r.curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        if r.curve:
            steps, values = zip(*r.curve)
            ax.plot(steps, values, color="gray", alpha=0.35, linewidth=0.8)
    length = min(len(c) for c in curves)
    x = np.array([step for step, _ in curves[0][:length]])
    y = np.array([[v for _, v in c[:length]] for c in curves])  # (seeds, evaluations)
    ax.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.2, label="min-max over seeds")
    low, high = np.percentile(y, [25, 75], axis=0)
    ax.fill_between(x, low, high, alpha=0.3, label="interquartile range")
    ax.plot(x, np.median(y, axis=0), linewidth=2, label=f"median of {len(curves)} seeds")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation mean return")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    from recurrent_rl.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
