"""``recurrent-rl``: the command line, a thin layer over :mod:`recurrent_rl.runs.training` and
:mod:`recurrent_rl.runs.evaluation`.

``recurrent-rl`` with no arguments trains the default preset (the README's main job). Bad
input (config, env id, preset, device, model file, run folder) gets one ``error:`` line and exit
code 2, never a traceback, and nothing on disk is changed. A write that fails for want of room or
permission (full disk, read-only file system) is one ``error:`` line too, with exit code 1
(:func:`recurrent_rl.runs.folders.storage_error`). Ctrl-C / SIGTERM during training writes
a checkpoint and exits with 130 / 143. Warnings of the package are one ``warning:`` line each.

Start-up imports no torch, SB3 or TensorBoard: ``--help``, ``train --help`` and ``presets`` answer
at once, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from recurrent_rl.runs.config import MEMORIES, UserInputError, config_keys, config_to_yaml

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def build_parser() -> argparse.ArgumentParser:
    from recurrent_rl.runs.presets import DEFAULT_PRESET, preset_values

    # the values `recurrent-rl train` uses without --preset or --config (read, not validated: no torch)
    effective = {k: v for k, v in preset_values(DEFAULT_PRESET).items() if k != "description"}
    uses = _default_preset_values(effective)

    parser = argparse.ArgumentParser(
        prog="recurrent-rl",
        description="Memory-based RL (GRU / LSTM / Elman RNN PPO): train, evaluate, list presets and envs. "
        f"With no command, trains the default preset ({DEFAULT_PRESET}) and prints its evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        f"default preset: {uses['device']}); checked before anything runs",
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
    _add_backend_options(many, "seeds")
    train.set_defaults(handler=cmd_train)

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
    _add_backend_options(tune, "trials", default_workers="1")
    tune.set_defaults(handler=cmd_tune)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a run folder or a saved model in simulation",
        description="Run N episodes (memory carried within and reset between episodes), print a table, and "
        "optionally write a JSON report, a video/GIF and a PNG plot (returns, hidden-state activations).",
    )
    evaluate.add_argument("target", metavar="RUN_DIR_OR_MODEL", help="a run folder or a model .zip file")
    evaluate.add_argument("--episodes", type=int, default=20, metavar="N", help="episodes (default: 20)")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions (default: deterministic)")
    evaluate.add_argument(
        "--seed", type=int, default=0, metavar="N", help="episode i is reset with seed N+i (default: 0)"
    )
    evaluate.add_argument("--json", metavar="PATH", help="write the JSON report here")
    evaluate.add_argument("--video", metavar="PATH", help="record episodes to a .gif (or .mp4 with imageio-ffmpeg)")
    evaluate.add_argument(
        "--video-episodes", type=int, default=1, metavar="N", help="episodes in the video (default: 1)"
    )
    evaluate.add_argument("--plot", metavar="PATH", help="PNG: return distribution and memory activations")
    evaluate.add_argument("--best", action="store_true", help="evaluate the run's best_model.zip instead of model.zip")
    evaluate.add_argument("--env", metavar="ID", help="env id (default: the one in the run's config.yaml)")
    evaluate.add_argument(
        "--trust-pickle",
        action="store_true",
        help="open a model .zip that has no weights-only copy "
        "(.safetensors + .json) beside it, and its vecnormalize.pkl: both run any code they hold, "
        "so only for files you trust",
    )
    evaluate.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    presets = commands.add_parser(
        "presets",
        help="list the presets, one line each (* = default)",
        description="List the shipped presets: name, env, memory, steps, description; the "
        "training presets (recurrent-rl train --preset), then the pretraining presets "
        "(recurrent-rl pretrain --preset).",
    )
    presets.add_argument(
        "--pretrain", action="store_true", help="list only the pretraining presets (recurrent-rl pretrain)"
    )
    presets.set_defaults(handler=cmd_presets)
    envs = commands.add_parser(
        "envs",
        help="list the pomdp/ environments, one line each",
        description="List the registered pomdp/ environments with their spaces and presets.",
    )
    envs.set_defaults(handler=cmd_envs)
    from recurrent_rl.export.cli import add_parser as add_export_command

    add_export_command(commands)

    try:  # the supervised side's command, when it is installed
        from recurrent_rl.supervised.cli import add_pretrain_command
    except ImportError:
        pass
    else:
        add_pretrain_command(commands)
    return parser


def _add_backend_options(parser: Any, what: str, default_workers: str = "one per CPU") -> None:
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"{what} at a time (default: {default_workers}; with --backend ray: the cluster's CPUs)",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help=f"run the {what} as local processes (default) or as Ray tasks (needs recurrent_rl[ray])",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="with --backend ray: the cluster (HOST:6379, auto; default: local, a Ray runtime started on this machine)",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``recurrent-rl`` and ``python -m recurrent_rl``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["train", *argv]  # the main job: `recurrent-rl` alone trains the default preset
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_runs_dir(args)
        with warnings.catch_warnings():
            warnings.showwarning = partial(_show_warning, args.command, warnings.showwarning)
            return args.handler(args)
    except UserInputError as error:
        from recurrent_rl.runs.folders import StorageError

        print(f"recurrent-rl {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED if isinstance(error, StorageError) else EXIT_USAGE
    except Exception as error:  # a write refused by the disk outside a run (outputs, reports): one line too
        from recurrent_rl.runs.folders import storage_error

        failure = storage_error(error)
        if failure is None:
            raise
        print(f"recurrent-rl {args.command}: error: {failure}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"recurrent-rl {args.command}: stopped at once (the latest checkpoint is intact)", file=sys.stderr)
        return EXIT_SIGNAL["SIGINT"]


def _check_runs_dir(args: argparse.Namespace) -> None:
    """A --runs-dir that is a file, or under one, is refused before any command starts (train, tune, pretrain)."""
    if getattr(args, "runs_dir", None) and not getattr(args, "dry_run", False) and not getattr(args, "resume", None):
        from recurrent_rl.runs.folders import check_can_create

        check_can_create(args.runs_dir)


# --- commands -----------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from recurrent_rl.runs.training import TrainingError, resume, train

    if args.trust_pickle and not args.resume:
        raise UserInputError(
            "--trust-pickle goes with --resume RUN_DIR (a checkpoint without a weights-only copy); "
            "a new run opens no model file"
        )
    if args.seeds is None:
        given = [
            flag
            for flag, value in (
                ("--threshold", args.threshold),
                ("--workers", args.workers),
                ("--address", args.address),
                ("--backend ray", args.backend == "ray"),
            )
            if value
        ]
        if given:
            raise UserInputError(f"{', '.join(given)}: only with --seeds (e.g. --seeds 0-9)")
    else:
        return cmd_train_seeds(args)
    if args.resume:
        conflicting = [
            flag
            for flag, value in (
                ("--preset", args.preset),
                ("--config", args.config),
                ("--set", args.overrides),
                ("--seed", args.seed),
                ("--memory", args.memory),
                ("--name", args.name),
                ("--encoder", args.encoder),
                ("--env", args.env),
                ("--device", args.device),
                ("--freeze-encoder", args.freeze_encoder),
            )
            if value
        ]
        if conflicting:
            raise UserInputError(
                f"--resume continues a run with its own config.yaml; {', '.join(conflicting)} cannot change it "
                "(only --timesteps can raise its total). Start a new run instead."
            )
        if args.dry_run:
            from recurrent_rl.runs import folders

            if not folders.is_run_dir(args.resume):
                raise folders.RunError(f"--resume {args.resume}: not a run folder (no {folders.CONFIG})")
            from recurrent_rl.received import read_text

            print(read_text(Path(args.resume, folders.CONFIG), folders.CONFIG), end="")
            return 0
        run = partial(resume, args.resume, args.timesteps, trust_pickle=args.trust_pickle)
    else:
        from recurrent_rl.runs.training import check_device, resolve_encoder

        config = resolve_train_config(args)
        check_device(config.device)
        notes: list[str] = []
        config = resolve_encoder(config, pinned=_pinned_sizes(args.overrides), notes=notes)
        for note in notes:
            print(f"recurrent-rl train: {note}", file=sys.stderr)
        if args.dry_run:
            print(config_to_yaml(config), end="")
            return 0
        run = partial(train, config, args.runs_dir, args.name)
    try:
        result = run(progress_bar=args.progress, verbose=int(args.verbose))
    except TrainingError as error:
        print(f"recurrent-rl train: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return _report_training(result)


def _check_backend(args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {args.workers}")
    if args.address is not None and args.backend != "ray":
        raise UserInputError("--address names a Ray cluster: add --backend ray")
    if args.backend == "ray":
        from recurrent_rl.sweeps.ray_backend import require_ray

        require_ray()


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
    _check_backend(args)
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
        backend=args.backend,
        address=args.address,
        threshold=args.threshold,
    )
    from recurrent_rl.sweeps.seeds import CURVES, REPORT

    print(report.table())
    print(f"report: {report.group / REPORT}")
    if (report.group / CURVES).exists():
        print(f"learning curves: {report.group / CURVES}")
    return 0 if all(r.error is None for r in report.results) else EXIT_FAILED


def cmd_tune(args: argparse.Namespace) -> int:
    """``tune``: an Optuna study over the preset's hyperparameters."""
    from recurrent_rl.sweeps.tune import require_optuna, run_study

    require_optuna()
    _check_backend(args)
    from recurrent_rl.runs.config import load_config
    from recurrent_rl.runs.presets import DEFAULT_PRESET, load_preset
    from recurrent_rl.runs.training import check_device

    preset = args.preset or (None if args.config else DEFAULT_PRESET)
    config = load_config(args.config, args.overrides) if args.config else load_preset(str(preset), args.overrides)
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
        backend=args.backend,
        address=args.address,
        seed=args.sampler_seed,
        trial_seeds=args.trial_seeds,
    )
    print(result.table())
    print(f"study: {study} in {result.storage}")
    if result.best_preset is not None:
        print(f"best preset: {result.best_preset}\n  train it: recurrent-rl train --config {result.best_preset}")
    if result.importance is not None:
        print(f"parameter importances: {result.importance}")
    print(f"resume or extend: recurrent-rl tune ... --study {study} --trials N")
    return 0


def resolve_train_config(args: argparse.Namespace) -> Any:
    """The config a ``train`` command line asks for: preset or file, then --set, then the flags
    (--env, --timesteps, --seed, --memory, --device, --encoder, --freeze-encoder)."""
    from recurrent_rl.runs.config import load_config
    from recurrent_rl.runs.presets import DEFAULT_PRESET, load_preset

    overrides = list(args.overrides)
    if getattr(args, "env", None) is not None:
        overrides.append(f"env={json.dumps(args.env)}")
    if args.memory is not None:
        overrides.append(f"policy_kwargs.memory={args.memory}")
    if getattr(args, "device", None) is not None:
        overrides.append(f"device={json.dumps(args.device)}")
    if args.encoder is not None:
        overrides.append(f"encoder.path={json.dumps(str(Path(args.encoder).resolve()))}")
    if getattr(args, "freeze_encoder", False):
        overrides.append("encoder.freeze=true")
    if args.timesteps is not None:
        overrides.append(f"n_timesteps={args.timesteps}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    config = (
        load_config(args.config, overrides) if args.config else load_preset(args.preset or DEFAULT_PRESET, overrides)
    )
    if config.encoder.freeze and config.encoder.path is None and getattr(args, "freeze_encoder", False):
        raise UserInputError(
            "--freeze-encoder: there is no encoder to freeze; add --encoder PATH (an encoder.pt "
            "from recurrent-rl pretrain)"
        )
    return config


def _pinned_sizes(overrides: list[str]) -> list[str]:
    """The memory sizes a command line sets itself (``--set policy_kwargs.hidden_size=...``): an encoder must agree."""
    keys = {override.partition("=")[0].strip() for override in overrides}
    return [name for name in ("hidden_size", "num_layers") if f"policy_kwargs.{name}" in keys]


def _report_training(result: Any) -> int:
    from recurrent_rl.runs import folders as runs

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch as th

    from recurrent_rl.runs.evaluation import (
        check_output_path,
        check_plot_path,
        check_video_path,
        evaluate,
        load_agent,
        save_plot,
        save_report,
        save_video,
    )

    th.set_num_threads(1)
    if args.episodes < 1:
        raise UserInputError(f"--episodes must be at least 1, got {args.episodes}")
    from recurrent_rl.runs.config import MAX_SEED

    if not 0 <= args.seed <= MAX_SEED:
        raise UserInputError(f"--seed must be in [0, {MAX_SEED}] (episode i is reset with seed N+i), got {args.seed}")
    if args.best and Path(args.target).is_file():
        raise UserInputError(
            f"--best picks the best model of a run folder, and {args.target} is a file: give the "
            "run folder (recurrent-rl evaluate RUN_DIR --best), or drop --best"
        )
    if args.video:  # fail before running any episode
        check_video_path(args.video)
        if args.video_episodes < 1:
            raise UserInputError(f"--video-episodes must be at least 1, got {args.video_episodes}")
    if args.plot:
        check_plot_path(args.plot)
    for flag, path, example in (
        ("--json", args.json, "eval.json"),
        ("--plot", args.plot, "plot.png"),
        ("--video", args.video, "episode.gif"),
    ):
        if path:
            check_output_path(flag, path, example)
    agent = load_agent(args.target, env_id=args.env, best=args.best, trust_pickle=args.trust_pickle)
    video_episodes = min(args.video_episodes, args.episodes) if args.video else 0
    report = evaluate(
        agent,
        args.episodes,
        deterministic=not args.stochastic,
        seed=args.seed,
        video_episodes=video_episodes,
        progress=args.progress,
    )
    print(report.table())
    if args.json:
        save_report(report, args.json)
        print(f"report: {args.json}")
    if args.video:
        save_video(report.frames, args.video, report.fps)
        print(f"video: {args.video} ({len(report.frames)} frames)")
    if args.plot:
        save_plot(report, args.plot)
        print(f"plot: {args.plot}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """The training presets (``*`` marks the default), then the pretraining presets, marked ``pretrain``.

    The files are read, not validated (tests/test_config.py validates every preset), so that the
    listing loads no torch.
    """
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/
    from recurrent_rl.runs.presets import DEFAULT_PRESET, preset_names

    def note(env_id: str) -> str:
        return "" if env_id in gym.registry else "  [env not registered]"

    pretrain_rows = []
    for name in preset_names("pretrain"):
        values = _pretrain_preset_values(name)
        pretrain_rows.append(
            (
                "pretrain",
                name,
                str(values["data.env_id"]),
                f"{values['model.memory']} {values['model.hidden_size']}",
                _steps(values["data.n_steps"]),
                str(values["description"]) + note(str(values["data.env_id"])),
            )
        )
    pretrain_hint = (
        "use one with: recurrent-rl pretrain --preset NAME (then: recurrent-rl train --encoder RUN/encoder.pt)"
    )
    if getattr(args, "pretrain", False):
        _print_rows([row[1:] for row in pretrain_rows])
        print(pretrain_hint)
        return 0
    rows = []
    for name in preset_names():
        values = _default_preset_values(_preset_mapping(name))
        rows.append(
            (
                "*" if name == DEFAULT_PRESET else " ",
                name,
                str(values["env"]),
                str(values["memory"]),
                _steps(values["n_timesteps"]),
                str(values["description"]) + note(str(values["env"])),
            )
        )
    _print_rows(rows)
    print("* default (what `recurrent-rl` trains); use one with: recurrent-rl train --preset NAME")
    print("\npretraining presets (an encoder for train --encoder):")
    _print_rows(pretrain_rows)
    print(pretrain_hint)
    return 0


def _preset_mapping(name: str) -> dict[str, Any]:
    from recurrent_rl.runs.config import unwrap_zoo_layout
    from recurrent_rl.runs.presets import preset_values

    return unwrap_zoo_layout(preset_values(name))


def _default_preset_values(values: dict[str, Any]) -> dict[str, Any]:
    """A training config mapping's keys, dotted, with the schema's defaults filled in, and its memory.

    Not validated: ``presets``, ``envs`` and ``--help`` show presets without building them (no torch)."""
    from recurrent_rl.runs.config import TrainConfig, memory_of
    from recurrent_rl.runs.schema import flat_values

    flat = flat_values(TrainConfig, values)
    flat["memory"] = memory_of(str(flat.get("policy")), flat.get("policy_kwargs.memory"))
    flat.setdefault("env", "?")
    return flat


def _pretrain_preset_values(name: str) -> dict[str, Any]:
    from recurrent_rl.runs.presets import preset_values
    from recurrent_rl.runs.schema import flat_values
    from recurrent_rl.supervised.config import PretrainConfig

    flat = flat_values(PretrainConfig, preset_values(name, "pretrain"))
    flat.setdefault("data.env_id", "?")
    flat.setdefault("data.n_steps", 0)
    return flat


def cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/
    from recurrent_rl.runs.presets import preset_names

    by_env: dict[str, list[str]] = {}
    for name in preset_names():  # read, not validated (as in `presets`): no torch
        by_env.setdefault(str(_default_preset_values(_preset_mapping(name))["env"]), []).append(name)
    rows = []
    for env_id in sorted(k for k in gym.registry if k.startswith("pomdp/")):
        try:
            env = gym.make(env_id)
            spaces = f"obs {_space(env.observation_space)}  actions {_space(env.action_space)}"
            env.close()
        except Exception as error:  # an optional dependency missing: still list the id
            spaces = f"(cannot be created here: {type(error).__name__}: {error})"
        rows.append((env_id, spaces, "preset " + ", ".join(by_env.get(env_id, ["(none)"]))))
    _print_rows(rows)
    return 0


# --- helpers --------------------------------------------------------------------------------------


def _print_rows(rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def _space(space: Any) -> str:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})"
    return str(space)


def _show_warning(
    command: str,
    show: Any,
    message: Any,
    category: type,
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """The package's own warnings as one ``recurrent-rl <command>: warning: ...`` line; others as Python shows them."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parents[1]) and issubclass(
        category, UserWarning
    ):
        print(f"recurrent-rl {command}: warning: {message}", file=sys.stderr)
    else:
        show(message, category, filename, lineno, file, line)


def _steps(n: Any) -> str:
    from recurrent_rl.runs.schema import parse_number

    n = int(parse_number(n) or 0) if isinstance(n, str) else int(n)
    return f"{n / 1e6:g}M steps" if n >= 1_000_000 else f"{n / 1e3:g}k steps" if n >= 1000 else f"{n} steps"


def _version() -> str:
    from recurrent_rl import __version__

    return __version__
