"""``recurrent-rl train``: a new run from a preset or a config file, ``--resume``, and ``--seeds``."""

from __future__ import annotations

import argparse
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any

from recurrent_rl.cli.common import (
    EXIT_FAILED,
    EXIT_SIGNAL,
    _pinned_sizes,
    add_env_module_options,
    add_executor_options,
    add_hyperparams_option,
    check_device_flag,
    check_executor,
    resolve_train_config,
)
from recurrent_rl.config.loading import config_keys
from recurrent_rl.config.sections import MEMORIES
from recurrent_rl.config.train import UserInputError, config_to_yaml


def add_parser(commands: Any) -> None:
    from recurrent_rl.cli.listing import _default_preset_values
    from recurrent_rl.config.presets import DEFAULT_PRESET, SAC_PRESET, preset_values

    # the values `recurrent-rl train` uses without --preset or --config (read, not validated: no torch)
    effective = {k: v for k, v in preset_values(DEFAULT_PRESET).items() if k != "description"}
    uses = _default_preset_values(effective)
    train = commands.add_parser(
        "train",
        help="train an agent from a preset or a config file into a new run folder",
        description="Train an agent into a new run folder (runs/<env>__<memory>__seed<seed>__<time>/), or continue "
        f"one with --resume. Without --preset or --config: the default preset ({DEFAULT_PRESET}).",
        epilog="config keys (for --set KEY=VALUE; VALUE is YAML, e.g. --set policy_kwargs.net_arch=[32,32]), with "
        f"the schema's default and, where it differs, the value of the default preset ({DEFAULT_PRESET}), "
        "which train uses without --preset or --config:\n  "
        + "\n  ".join(config_keys(effective, label="default preset:")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME", help="a preset (recurrent-rl presets lists them)")
    source.add_argument("--config", metavar="FILE", help="a YAML config file (e.g. a run's config.yaml)")
    train.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config key (dotted for nested keys, repeatable): --set n_steps=64",
    )
    add_hyperparams_option(train)
    train.add_argument(
        "--algo",
        choices=("ppo", "maskable", "sac"),
        help="the algorithm (= --set algo=...): ppo (RecurrentPPO, the default), maskable (MaskableRecurrentPPO; the "
        f"env offers action_masks()), sac (RecurrentSAC; without --preset or --config: the preset {SAC_PRESET})",
    )
    train.add_argument("--env", metavar="ID", help=f"env id (= --set env=ID; default preset: {uses['env']})")
    train.add_argument(
        "--timesteps",
        type=int,
        metavar="N",
        help=f"total env steps (= --set n_timesteps=N; default preset: {uses['n_timesteps']})",
    )
    train.add_argument("--seed", type=int, metavar="N", help=f"seed (= --set seed=N; default preset: {uses['seed']})")
    train.add_argument(
        "--memory",
        choices=list(MEMORIES),
        help=f"memory core (= --set policy_kwargs.memory=...; default preset: {uses['memory']})",
    )
    train.add_argument(
        "--device",
        metavar="DEVICE",
        help="torch device: auto, cpu, cuda, cuda:N (= --set device=...; "
        f"default preset: {uses['device']}); checked before anything runs; with --resume, where the run goes on",
    )
    train.add_argument(
        "--encoder",
        metavar="PATH",
        help="a pretrained encoder.pt (= --set encoder.path=PATH); it sets "
        "the memory type and sizes, so --memory must agree with it",
    )
    train.add_argument(
        "--freeze-encoder", action="store_true", help="keep the encoder's weights fixed (= --set encoder.freeze=true)"
    )
    add_env_module_options(train)
    placement = train.add_argument_group("where the envs step (recurrent_rl.runners)")
    placement.add_argument(
        "--vec-env",
        choices=("dummy", "subproc"),
        help="dummy: one after another in this process; subproc: one process each (= --set vec_env=...)",
    )
    placement.add_argument(
        "--runners",
        type=int,
        metavar="N",
        help="collect in N Ray rollout runners, n_envs / N envs each (= --set runners.count=N; needs [ray])",
    )
    placement.add_argument(
        "--runner-envs",
        type=int,
        metavar="K",
        help="with --runners N: K envs in each runner, N * K in all (= --set runners.envs_per_runner=K n_envs=N*K)",
    )
    train.add_argument("--runs-dir", metavar="DIR", default="runs", help="parent of the run folder (default: runs)")
    train.add_argument("--name", metavar="NAME", help="run folder name (default: env, memory, seed and time)")
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue this run from its latest checkpoint (with --timesteps N: up to N steps in total)",
    )
    train.add_argument(
        "--trust-pickle",
        action="store_true",
        help="with --resume: read a checkpoint that has no "
        "weights-only copy from SB3's zip and vecnormalize.pkl, which run any code they hold: only "
        "for files you trust (run folders this package writes never need it)",
    )
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    train.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar with the recent mean return; --no-progress: plain log lines on stdout "
        "every 10%% of the run instead (default: the bar when stderr is a terminal, else lines)",
    )
    train.add_argument("-v", "--verbose", action="store_true", help="print SB3's log table after each rollout")
    track = train.add_argument_group("experiment tracking (recurrent_rl.runs.tracking)")
    track.add_argument(
        "--track",
        choices=("wandb",),
        help="also log to Weights & Biases (the run's config and every logged value; needs recurrent_rl[wandb]; "
        "WANDB_MODE=offline keeps it in <run>/wandb/)",
    )
    track.add_argument(
        "--wandb-project", metavar="NAME", help="with --track wandb: the project (default: recurrent_rl)"
    )
    track.add_argument("--wandb-entity", metavar="NAME", help="with --track wandb: the team or user")
    many = train.add_argument_group("many seeds (recurrent_rl.sweeps.seeds)")
    many.add_argument(
        "--seeds",
        metavar="SPEC",
        help="train these seeds (0-9, 0,3,5 or 0-4,10), each into "
        "<runs-dir>/<name>/seed<N>/, in parallel, and write the aggregate report seeds.json and "
        "curves.png there",
    )
    many.add_argument(
        "--threshold", type=float, metavar="R", help="with --seeds: also count the seeds whose final return reaches R"
    )
    add_executor_options(many, "seeds", address_help="the Ray cluster of --runners and of --executor ray")
    train.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from recurrent_rl.runs.training import TrainingError, resume, train

    if args.trust_pickle and not args.resume:
        raise UserInputError(
            "--trust-pickle goes with --resume RUN_DIR (a checkpoint without a weights-only copy); "
            "a new run opens no model file"
        )
    callbacks = _trackers(args)
    if args.seeds is None:
        given = [
            flag
            for flag, value in (
                ("--threshold", args.threshold),
                ("--workers", args.workers),
                ("--workers-per-gpu", args.workers_per_gpu),
                ("--address", args.address is not None and args.runners is None),
                ("--executor ray", args.executor == "ray"),
                ("--backend", args.deprecated_backend),
            )
            if value
        ]
        if given:
            also = " (--address also goes with --runners N)" if args.address is not None else ""
            raise UserInputError(f"{', '.join(given)}: only with --seeds (e.g. --seeds 0-9){also}")
    else:
        return cmd_train_seeds(args)
    if args.resume:
        conflicting = [
            flag
            for flag, value in (
                ("--preset", args.preset),
                ("--config", args.config),
                ("--algo", args.algo),
                ("--set", args.overrides),
                ("--seed", args.seed),
                ("--memory", args.memory),
                ("--name", args.name),
                ("--encoder", args.encoder),
                ("--env", args.env),
                ("--freeze-encoder", args.freeze_encoder),
                ("--gym-packages", args.gym_packages),
                ("--vec-env", args.vec_env),
                ("--runners", args.runners is not None),
                ("--runner-envs", args.runner_envs is not None),
                ("--address", args.address),
            )
            if value
        ]
        if conflicting:
            raise UserInputError(
                f"--resume continues a run with its own config.yaml; {', '.join(conflicting)} cannot change it "
                "(only --timesteps can raise its total). Start a new run instead."
            )
        if args.dry_run:
            from recurrent_rl.io import run_folder as folders

            if not folders.is_run_dir(args.resume):
                raise folders.RunError(f"--resume {args.resume}: not a run folder (no {folders.CONFIG})")
            from recurrent_rl.received import read_text

            print(read_text(Path(args.resume, folders.CONFIG), folders.CONFIG), end="")
            return 0
        check_device_flag(args.device)
        run = partial(resume, args.resume, args.timesteps, trust_pickle=args.trust_pickle, device=args.device)
    else:
        from recurrent_rl.runs.training import check_device, resolve_encoder

        config = resolve_train_config(args)
        check_device(config.device)
        if config.runners.count:
            from recurrent_rl.cluster import check_reachable, require_ray

            require_ray("--runners")  # before anything is made: the extra to install
            if config.runners.address != "local":
                check_reachable(config.runners.address)  # Ray would retry an address where nothing listens for minutes
        notes: list[str] = []
        config = resolve_encoder(config, pinned=_pinned_sizes(args.overrides), notes=notes)
        for note in notes:
            print(f"recurrent-rl train: {note}", file=sys.stderr)
        if args.dry_run:
            print(config_to_yaml(config), end="")
            return 0
        run = partial(train, config, args.runs_dir, args.name)
    try:
        result = run(progress_bar=args.progress, verbose=int(args.verbose), callbacks=callbacks)
    except TrainingError as error:
        print(f"recurrent-rl train: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return _report_training(result)


def _trackers(args: argparse.Namespace) -> list[Any]:
    """The callbacks of ``--track``, checked before anything runs."""
    if args.track is None:
        given = [
            flag
            for flag, value in (("--wandb-project", args.wandb_project), ("--wandb-entity", args.wandb_entity))
            if value
        ]
        if given:
            raise UserInputError(f"{', '.join(given)} goes with --track wandb")
        return []
    if args.seeds is not None:
        raise UserInputError("--track logs one run; with --seeds, track each seed's run by training it alone")
    from recurrent_rl.runs.tracking import TrackWithWandb, require_wandb

    require_wandb()
    return [TrackWithWandb(project=args.wandb_project, entity=args.wandb_entity)]


def cmd_train_seeds(args: argparse.Namespace) -> int:
    """``train --seeds``: one run per seed, in parallel, and the aggregate report."""
    from recurrent_rl.sweeps.seeds import parse_seeds, run_seeds

    seeds = parse_seeds(args.seeds)
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise UserInputError(f"--threshold must be a finite number (a return), got {args.threshold}")
    conflicting = [
        flag
        for flag, value in (("--seed", args.seed), ("--resume", args.resume), ("--encoder", args.encoder))
        if value is not None
    ]
    if conflicting:
        raise UserInputError(f"--seeds sets the seed of each run; {', '.join(conflicting)} cannot be combined with it")
    check_executor(args)
    from recurrent_rl.runs.training import check_device

    config = resolve_train_config(args)
    check_device(config.device)
    if args.dry_run:
        print(config_to_yaml(config), end="")
        print(f"# seeds: {seeds}")
        return 0
    report = run_seeds(
        config,
        seeds,
        args.runs_dir,
        args.name,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        threshold=args.threshold,
        workers_per_gpu=args.workers_per_gpu,
    )
    from recurrent_rl.sweeps.seeds import CURVES, REPORT

    print(report.table())
    print(f"report: {report.group / REPORT}")
    if (report.group / CURVES).exists():
        print(f"learning curves: {report.group / CURVES}")
    return 0 if all(r.error is None for r in report.results) else EXIT_FAILED


def _report_training(result: Any) -> int:
    from recurrent_rl.io import run_folder as runs

    run = result.run_dir
    if result.interrupted:
        print(
            f"stopped by {result.interrupted} at {result.num_timesteps} steps; checkpoint: {result.checkpoint}\n"
            f"continue with: recurrent-rl train --resume {run}",
            file=sys.stderr,
        )
        return EXIT_SIGNAL.get(result.interrupted, EXIT_FAILED)
    if result.report is not None:
        print(result.report.table())
    print(result.summary())
    print(f"run folder: {run}")
    print(f"  TensorBoard: tensorboard --logdir {run}")
    print(f"  evaluate:    recurrent-rl evaluate {run}   (report: {run / runs.EVAL_REPORT})")
    return 0
