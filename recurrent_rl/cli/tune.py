"""``recurrent-rl tune``: an Optuna study over a preset's hyperparameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from recurrent_rl.cli.common import (
    add_env_module_options,
    add_executor_options,
    add_hyperparams_option,
    check_executor,
)


def add_parser(commands: Any) -> None:
    from recurrent_rl.config.presets import DEFAULT_PRESET

    tune = commands.add_parser(
        "tune",
        help="search hyperparameters with Optuna; every trial is a run folder",
        description="Optuna study over a preset's hyperparameters (the memory type's search space, or --space). "
        "Trials train into <runs-dir>/tune/<study>/trial<N>/ and are pruned on the periodic evaluations; the study "
        "is stored in --storage (default sqlite:///<runs-dir>/tune/<study>.db), so the same --study resumes it. "
        "At the end: best.yaml (for train --config), a summary table and importance.png. Needs recurrent_rl[tune].",
    )
    tune_source = tune.add_mutually_exclusive_group()
    tune_source.add_argument("--preset", metavar="NAME", help=f"the preset to tune (default: {DEFAULT_PRESET})")
    tune_source.add_argument("--config", metavar="FILE", help="a YAML config file to tune")
    tune.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config key of the base config (repeatable)",
    )
    add_hyperparams_option(tune)
    tune.add_argument(
        "--trials",
        type=int,
        default=20,
        metavar="N",
        help="finished (complete or pruned) trials the study should have (default: 20)",
    )
    tune.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds")
    tune.add_argument("--study", metavar="NAME", help="study name; an existing study continues (default: the preset)")
    tune.add_argument(
        "--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///<runs-dir>/tune/<study>.db)"
    )
    tune.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="Optuna sampler (default: tpe)")
    tune.add_argument("--pruner", choices=("median", "none"), default="median", help="pruner (default: median)")
    tune.add_argument("--sampler-seed", type=int, metavar="N", help="seed of the sampler (default: random)")
    tune.add_argument("--space", metavar="FILE", help="YAML search space; its entries replace the default's")
    tune.add_argument(
        "--trial-seeds",
        type=int,
        default=1,
        metavar="N",
        help="train each trial on N seeds (the "
        "config's seed and the next ones) and maximise the mean of their final returns: settings that "
        "work on most seeds, at N times the cost (default: 1)",
    )
    tune.add_argument("--runs-dir", metavar="DIR", default="runs", help="parent of tune/ (default: runs)")
    tune.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print each trial's parameters when it starts and its training's progress lines (default: one line "
        "per trial, when it ends)",
    )
    add_env_module_options(tune)
    add_executor_options(tune, "trials", default_workers="1")
    tune.set_defaults(handler=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    """``tune``: an Optuna study over the preset's hyperparameters."""
    from recurrent_rl.sweeps.tune import require_optuna, run_study

    require_optuna()
    check_executor(args)
    from recurrent_rl.config.loading import load_config
    from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
    from recurrent_rl.runs.training import check_device

    preset = args.preset or (None if args.config else DEFAULT_PRESET)
    overrides = list(args.overrides)
    if args.gym_packages:
        overrides.append(f"gym_packages={json.dumps(list(args.gym_packages))}")
    config = load_config(args.config, overrides) if args.config else load_preset(str(preset), overrides)
    check_device(config.device)
    study = args.study or (preset if preset else Path(args.config).stem)
    result = run_study(
        config,
        trials=args.trials,
        timeout=args.timeout,
        storage=args.storage,
        study=study,
        sampler=args.sampler,
        pruner=args.pruner,
        space=args.space,
        runs_dir=args.runs_dir,
        workers=args.workers or 1,
        executor=args.executor,
        address=args.address,
        seed=args.sampler_seed,
        trial_seeds=args.trial_seeds,
        verbose=args.verbose,
        workers_per_gpu=args.workers_per_gpu,
    )
    print(result.table())
    print(f"study: {study} in {result.storage}")
    if result.best_preset is not None:
        print(f"best preset: {result.best_preset}\n  train it: recurrent-rl train --config {result.best_preset}")
    if result.importance is not None:
        print(f"parameter importances: {result.importance}")
    print(f"resume or extend: recurrent-rl tune ... --study {study} --trials N")
    return 0
