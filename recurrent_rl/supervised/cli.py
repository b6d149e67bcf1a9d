"""``recurrent-rl pretrain``: the command-line adapter for :func:`recurrent_rl.supervised.pretrain.pretrain`.

The main CLI wires it in with::

    add_pretrain_command(subparsers)          # in the parser setup
    ... if args.command == "pretrain": return run_pretrain_command(args)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recurrent_rl.supervised.presets import PRESETS


def add_pretrain_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``pretrain`` sub-command to an argparse ``subparsers`` object and return its parser."""
    parser = subparsers.add_parser(
        "pretrain",
        help="record trajectories, pretrain a sequence model on them, write encoder.pt",
        description="Record trajectories, train a GRU/LSTM/RNN to estimate what the observations hide, and "
        "write a run folder with model.pt and encoder.pt (use it with: train --encoder PATH).",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a pretraining preset")
    parser.add_argument("--config", metavar="FILE", help="a config file (.json, .toml, .yaml) applied over the preset")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one config key, e.g. train.epochs=20 or model.memory=lstm (repeatable)")  # fmt: skip
    parser.add_argument("--runs-dir", default="runs", help="where to create the run folder (default: runs)")
    parser.set_defaults(handler=run_pretrain_command)
    return parser


def run_pretrain_command(args: argparse.Namespace) -> int:
    """Run ``pretrain`` from parsed arguments; returns the exit code (2 on a config error)."""
    from recurrent_rl.supervised.pretrain import pretrain, resolve_config

    try:
        config = resolve_config(args.preset, args.config, list(getattr(args, "overrides", []) or []))
    except (ValueError, FileNotFoundError) as exc:
        print(f"recurrent-rl pretrain: error: {exc}", file=sys.stderr)
        return 2
    pretrain(config, runs_dir=args.runs_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m recurrent_rl.supervised.cli pretrain ...``) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="recurrent-rl")
    add_pretrain_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
