"""``recurrent-rl``: the command line, a thin layer over :mod:`recurrent_rl.runs.training` and
:mod:`recurrent_rl.runs.evaluation`; one module per command (``train``, ``evaluate``, ``export``,
``pretrain``, ``tune``, ``presets`` and ``envs``), this one builds the parser and runs a command.

``recurrent-rl`` with no arguments trains the default preset (the README's main job). Bad
input (config, env id, preset, device, model file, run folder) gets one ``error:`` line and exit
code 2, never a traceback, and nothing on disk is changed. A write that fails for want of room or
permission (full disk, read-only file system) is one ``error:`` line too, with exit code 1
(:func:`recurrent_rl.io.run_folder.storage_error`). Ctrl-C / SIGTERM during training writes
a checkpoint and exits with 130 / 143. Warnings of the package are one ``warning:`` line each.

Start-up imports no torch, SB3 or TensorBoard: ``--help``, ``train --help`` and ``presets`` answer
at once, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from functools import partial
from pathlib import Path
from typing import Any

from recurrent_rl.cli import evaluate, export, listing, pretrain, train, tune
from recurrent_rl.cli.common import EXIT_FAILED, EXIT_SIGNAL, EXIT_USAGE
from recurrent_rl.errors import UserInputError


def build_parser() -> argparse.ArgumentParser:
    from recurrent_rl.config.presets import DEFAULT_PRESET

    parser = argparse.ArgumentParser(
        prog="recurrent-rl",
        description="Memory-based RL (GRU / LSTM / Elman RNN PPO): train, evaluate, list presets and envs. "
        f"With no command, trains the default preset ({DEFAULT_PRESET}) and prints its evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (train, tune, evaluate, listing, export, pretrain):
        command.add_parser(commands)
    return parser


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
        from recurrent_rl.io.run_folder import StorageError

        print(f"recurrent-rl {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILED if isinstance(error, StorageError) else EXIT_USAGE
    except Exception as error:  # a write refused by the disk outside a run (outputs, reports): one line too
        from recurrent_rl.io.run_folder import storage_error

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
        from recurrent_rl.io.run_folder import check_can_create

        check_can_create(args.runs_dir)


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


def _version() -> str:
    from recurrent_rl import __version__

    return __version__
