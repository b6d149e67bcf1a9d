"""``recurrent-rl pretrain``: the command-line adapter for :func:`recurrent_rl.supervised.pretrain.pretrain`.

The main CLI (:mod:`recurrent_rl.cli.main`) wires it in with::

    add_pretrain_command(subparsers)          # in the parser setup; args.handler runs it

Bad input (a preset, a config file or key, the env id, the recording policy, data that does not
fit the config) gets one ``error:`` line and exit code 2, never a traceback, and no run folder;
a loss that turns non-finite during training, a full disk or a read-only folder exits with 1 and
one ``error:`` line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recurrent_rl.errors import UserInputError

EXIT_USAGE = 2
EXIT_FAILED = 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``pretrain`` sub-command to an argparse ``subparsers`` object and return its parser."""
    from recurrent_rl.config.presets import preset_names
    from recurrent_rl.supervised.config import OVERRIDE_EXAMPLE, pretrain_config_keys

    parser = subparsers.add_parser(
        "pretrain",
        help="record trajectories, pretrain a sequence model on them, write encoder.pt",
        description="Record trajectories, train a GRU/LSTM/RNN to estimate what the observations hide, and "
        "write a run folder with config.yaml, model.pt and encoder.pt (use it with: train --encoder PATH).",
        epilog=f"config keys (for --set KEY=VALUE; VALUE is YAML, e.g. --set {OVERRIDE_EXAMPLE}):\n  "
        + "\n  ".join(pretrain_config_keys()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help=f"a pretraining preset: {', '.join(preset_names('pretrain'))} "
        "(recurrent-rl presets --pretrain describes them)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a config file (.yaml, .json or .toml; e.g. a pretraining run's config.yaml), laid over the preset",
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override one config key, e.g. train.epochs=20 or model.memory=lstm (repeatable)",
    )
    parser.add_argument("--runs-dir", default="runs", help="where to create the run folder (default: runs)")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="let data.policy be a model .zip without a "
        "weights-only copy (.safetensors + .json) beside it: it runs any code it holds, so only for "
        "files you trust",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar over the epochs with the losses; --no-progress: a plain line every 10%% "
        "of the epochs instead (default: the bar when stderr is a terminal, else lines)",
    )
    parser.set_defaults(handler=run_pretrain_command)
    return parser


def run_pretrain_command(args: argparse.Namespace) -> int:
    """Run ``pretrain`` from parsed arguments; returns the exit code (2 on bad input, 1 on a failed fit)."""
    from recurrent_rl.config.schema import config_to_yaml
    from recurrent_rl.supervised.config import resolve_config

    try:
        config = resolve_config(args.preset, args.config, list(getattr(args, "overrides", []) or []))
        if getattr(args, "dry_run", False):
            print(config_to_yaml(config), end="")
            return 0
        from recurrent_rl.supervised.pretrain import pretrain

        pretrain(
            config,
            runs_dir=args.runs_dir,
            progress_bar=getattr(args, "progress", None),
            trust_pickle=getattr(args, "trust_pickle", False),
        )
    except UserInputError as error:
        from recurrent_rl.io.run_folder import StorageError

        print(f"recurrent-rl pretrain: error: {error}", file=sys.stderr)
        return EXIT_FAILED if isinstance(error, StorageError) else EXIT_USAGE
    except FloatingPointError as error:  # fit(): the gradient norm became nan or inf
        print(f"recurrent-rl pretrain: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m recurrent_rl.cli.pretrain pretrain ...``).

    ``recurrent-rl pretrain`` is the same command."""
    parser = argparse.ArgumentParser(prog="recurrent-rl")
    add_pretrain_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())


add_pretrain_command = add_parser  # its name before the command line became a package
