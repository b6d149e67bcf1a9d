"""``recurrent-rl evaluate``: episodes of a run folder's model (or a saved model) in simulation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recurrent_rl.cli.common import add_env_module_options
from recurrent_rl.config.train import UserInputError


def add_parser(commands: Any) -> None:
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
    add_env_module_options(evaluate)
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
    from recurrent_rl.config.train import MAX_SEED

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
    agent = load_agent(
        args.target, env_id=args.env, best=args.best, trust_pickle=args.trust_pickle, gym_packages=args.gym_packages
    )
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
