"""``recurrent-rl package RUN_DIR --out DIR``: a shareable agent, a thin layer over
:func:`recurrent_rl.runs.package.package_run` (the folder's layout is described there)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "package a run's agent to share: model card, weights-only model, config, evaluation, replay"
DESCRIPTION = (
    "Evaluate a run folder's model and write a folder in the Hugging Face Hub's layout for RL models: README.md "
    "(a model card whose YAML metadata holds library_name, tags and the evaluation as a model-index), "
    "model.safetensors + model.json (the weights-only model with its env id), config.yaml, eval.json and "
    "replay.gif. `recurrent-rl evaluate DIR` and recurrent_rl.load_safe(DIR) open it with no other file; "
    "opening it runs no code from it."
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("package", help=HELP, description=DESCRIPTION)
    parser.add_argument("target", metavar="RUN_DIR", help="a run folder (what recurrent-rl train wrote)")
    parser.add_argument("--out", metavar="DIR", required=True, help="the folder to write (new, or empty)")
    parser.add_argument("--best", action="store_true", help="package the run's best model instead of the final one")
    parser.add_argument(
        "--episodes", type=int, default=10, metavar="N", help="evaluation episodes the card reports (default: 10)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="evaluation episode i is reset with seed N+i (default: 0)"
    )
    parser.add_argument(
        "--no-replay", dest="replay", action="store_false", help="write no replay.gif (it needs imageio and pillow)"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar of the evaluation (default: when stderr is a terminal)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch as th

    from recurrent_rl.config.train import MAX_SEED
    from recurrent_rl.errors import UserInputError
    from recurrent_rl.runs.package import CARD, check_out, package_run

    if not 0 <= args.seed <= MAX_SEED:
        raise UserInputError(f"--seed must be in [0, {MAX_SEED}] (episode i is reset with seed N+i), got {args.seed}")
    check_out(args.out)
    th.set_num_threads(1)
    out = package_run(
        args.target,
        args.out,
        best=args.best,
        episodes=args.episodes,
        seed=args.seed,
        replay=args.replay,
        progress=args.progress,
    )
    files = ", ".join(sorted(path.name for path in out.iterdir()))
    print(f"wrote {out}: {files}")
    print(f"the model card: {out / CARD}; evaluate it anywhere: recurrent-rl evaluate {out}")
    return 0
