"""What the commands of ``recurrent-rl`` share: exit codes, the executor options of the sweeps,
the resolved training config of ``train`` and ``tune``, and printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recurrent_rl.errors import UserInputError

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def add_env_module_options(parser: Any) -> None:
    """``--gym-packages``: the user's own env modules (rl-baselines3-zoo's flag)."""
    parser.add_argument(
        "--gym-packages",
        nargs="+",
        metavar="MODULE",
        help="import these modules before the env is made, in every process that makes it (your own env "
        "registering itself; = --set gym_packages=[...]); --env my_pkg:MyEnv-v0 imports my_pkg too",
    )


def add_hyperparams_option(parser: Any) -> None:
    """``--hyperparams KEY:VALUE ...``: rl-baselines3-zoo's form of ``--set KEY=VALUE`` (VALUE read as YAML)."""
    parser.add_argument(
        "--hyperparams",
        nargs="+",
        metavar="KEY:VALUE",
        help="rl-baselines3-zoo's form of --set (n_steps:64 learning_rate:lin_1e-3); applied after --set, VALUE "
        'read as YAML (policy_kwargs:"dict(...)" as in a zoo file)',
    )


def add_device_option(parser: Any, what: str, default: str = "auto") -> None:
    """``--device``: where torch puts the model (checked with :func:`check_device_flag`)."""
    parser.add_argument(
        "--device",
        metavar="DEVICE",
        default=default,
        help=f"torch device {what}: auto, cpu, cuda, cuda:N (default: {default})",
    )


def check_device_flag(device: str | None) -> None:
    """A one-line error for a ``--device`` this machine cannot use (before anything is read or written)."""
    if device is not None:
        from recurrent_rl.runs.training import check_device

        check_device(device)


def add_executor_options(
    parser: Any, what: str, default_workers: str = "one per CPU", address_help: str = "the Ray cluster"
) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"{what} at a time (default: {default_workers}; with --executor ray: the cluster's CPUs)",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help=f"run the {what} as local processes (default) or as Ray tasks (needs recurrent_rl[ray])",
    )
    parser.add_argument(
        "--workers-per-gpu",
        type=int,
        metavar="N",
        help=f"with device cuda: {what} sharing one GPU (default: 4; a Ray task asks for 1/N of a GPU)",
    )
    # the flag's name until "backend" was left to the policies' speed backend (backend: torch | cpu-kernels)
    parser.add_argument("--backend", choices=("local", "ray"), dest="deprecated_backend", help=argparse.SUPPRESS)
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help=f"{address_help} (HOST:6379, auto; default: local, a Ray runtime started on this machine)",
    )


def check_executor(args: argparse.Namespace) -> None:
    """The executor options checked; the deprecated ``--backend`` taken as ``--executor``, with a warning line."""
    if getattr(args, "deprecated_backend", None) is not None:
        print(
            f"recurrent-rl {args.command}: warning: --backend {args.deprecated_backend} is deprecated: use --executor "
            f"{args.deprecated_backend} (--backend goes after 2027-06-30)",
            file=sys.stderr,
        )
        args.executor = args.deprecated_backend
    if args.workers is not None and args.workers < 1:
        raise UserInputError(f"--workers must be at least 1, got {args.workers}")
    if getattr(args, "workers_per_gpu", None) is not None and args.workers_per_gpu < 1:
        raise UserInputError(f"--workers-per-gpu must be at least 1, got {args.workers_per_gpu}")
    if args.address is not None and args.executor != "ray" and not getattr(args, "runners", None):
        raise UserInputError("--address names a Ray cluster: add --executor ray (or --runners N)")
    if args.executor == "ray":
        from recurrent_rl.sweeps.executors import require_ray

        require_ray("--executor ray")


def resolve_train_config(args: argparse.Namespace) -> Any:
    """The config a ``train`` command line asks for: preset or file, then --set, then the flags
    (--env, --timesteps, --seed, --memory, --device, --encoder, --freeze-encoder)."""
    from recurrent_rl.config.loading import load_config
    from recurrent_rl.config.presets import DEFAULT_PRESET, SAC_PRESET, load_preset

    overrides = list(args.overrides)
    algo = getattr(args, "algo", None)
    if algo is not None:
        overrides.append(f"algo={algo}")
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
    if getattr(args, "gym_packages", None):
        overrides.append(f"gym_packages={json.dumps(list(args.gym_packages))}")
    if getattr(args, "vec_env", None) is not None:
        overrides.append(f"vec_env={args.vec_env}")
    runners, runner_envs = getattr(args, "runners", None), getattr(args, "runner_envs", None)
    if runner_envs is not None and runners is None:
        raise UserInputError("--runner-envs K goes with --runners N (K envs in each of N runners)")
    if runners is not None:
        overrides.append(f"runners.count={runners}")
        if runner_envs is not None:
            overrides += [f"runners.envs_per_runner={runner_envs}", f"n_envs={runners * runner_envs}"]
        if getattr(args, "address", None) is not None:
            overrides.append(f"runners.address={json.dumps(args.address)}")
    if args.timesteps is not None:
        overrides.append(f"n_timesteps={args.timesteps}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    default = SAC_PRESET if algo == "sac" else DEFAULT_PRESET
    try:
        return load_config(args.config, overrides) if args.config else load_preset(args.preset or default, overrides)
    except UserInputError as error:
        if algo is not None and "but this config trains algo" in str(error):
            source = f"the config {args.config}" if args.config else f"the preset {args.preset or default}"
            raise UserInputError(
                f"--algo {algo}: {error} ({source} is written for another algorithm: start from one written for "
                f"{algo}" + (f", e.g. --preset {SAC_PRESET})" if algo == "sac" else ")")
            ) from None
        # the config refuses encoder.freeze without encoder.path; the flag's own words say which flag to add
        if getattr(args, "freeze_encoder", False) and args.encoder is None and "encoder.path is null" in str(error):
            raise UserInputError(
                "--freeze-encoder: there is no encoder to freeze; add --encoder PATH (an encoder.pt "
                "from recurrent-rl pretrain)"
            ) from None
        raise


def _pinned_sizes(overrides: list[str]) -> list[str]:
    """The memory sizes a command line sets itself (``--set policy_kwargs.hidden_size=...``): an encoder must agree."""
    keys = {override.partition("=")[0].strip() for override in overrides}
    return [name for name in ("hidden_size", "num_layers") if f"policy_kwargs.{name}" in keys]


def _print_rows(rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def _steps(n: Any) -> str:
    from recurrent_rl.config.schema import parse_number

    n = int(parse_number(n) or 0) if isinstance(n, str) else int(n)
    return f"{n / 1e6:g}M steps" if n >= 1_000_000 else f"{n / 1e3:g}k steps" if n >= 1000 else f"{n} steps"
