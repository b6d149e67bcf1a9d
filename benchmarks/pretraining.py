"""Does pretraining pay? Environment steps to a return threshold, pretraining transitions included.

For CartPole and Pendulum with velocities masked, per seed:
  1. record trajectories with a random policy and pretrain a GRU to estimate the state, masked
     velocities included (the ``cartpole-novel`` / ``pendulum-novel`` presets);
  2. train RecurrentPPO with that encoder, frozen and fine-tuned (actor and critic memories),
     and the same RecurrentPPO from scratch (the variants are described at VARIANTS below);
  3. count environment steps until the mean return of the last 20 training episodes reaches the
     task's threshold; encoder runs are charged their pretraining transitions too. A run that
     never reaches it is charged its whole budget (so a failing baseline is under-counted).

The from-scratch agent gets the usual VecNormalize (observations and rewards). Results, table
and learning curves: the README, "Benchmark: does pretraining pay?".

    python -m benchmarks.pretraining                      # 2 tasks x 6 variants x 5 seeds, ~35 min on 2 cores
    python -m benchmarks.pretraining --tasks cartpole --seeds 2 --workers 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# scratch: VecNormalize on observations and rewards. frozen / finetuned: the encoder standardises
# observations with its fixed training statistics, VecNormalize on rewards only.
# scratch-fixednorm: from scratch, but with the encoder agents' input processing (the encoder's
# fixed standardisation instead of VecNormalize's running one): it separates what the pretrained
# weights bring from what the change of input normalisation brings.
# frozen-vecnorm / finetuned-vecnorm: VecNormalize standardises the observations, its running
# statistics starting at the encoder's (load_encoder(..., observation_statistics="vecnormalize")).
VARIANTS = ("scratch", "frozen", "finetuned", "scratch-fixednorm", "frozen-vecnorm", "finetuned-vecnorm")
PRETRAINED = ("frozen", "finetuned", "frozen-vecnorm", "finetuned-vecnorm")
BASELINES = ("scratch", "scratch-fixednorm")


@dataclass(frozen=True)
class Task:
    env_id: str
    preset: str
    threshold: float
    budget: int  # PPO env steps per run
    n_envs: int
    ppo: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, Any] = field(default_factory=dict)


# PPO settings: rl-baselines3-zoo's tuned RecurrentPPO settings for each NoVel task
# (hyperparams/ppo_lstm.yml), with a GRU of 64 units and a shorter BPTT chunk for Pendulum.
TASKS = {
    "cartpole": Task(
        "pomdp/CartPoleNoVel-v1",
        "cartpole-novel",
        threshold=400.0,
        budget=120_000,
        n_envs=8,
        ppo=dict(
            n_steps=32,
            batch_size=256,
            n_epochs=20,
            gae_lambda=0.8,
            gamma=0.98,
            ent_coef=0.0,
            learning_rate=("linear", 1e-3),
            clip_range=("linear", 0.2),
        ),
        heads=dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64])),
    ),
    "pendulum": Task(
        "pomdp/PendulumNoVel-v1",
        "pendulum-novel",
        threshold=-300.0,
        budget=150_000,
        n_envs=4,
        ppo=dict(
            n_steps=1024,
            batch_size=256,
            sequence_length=64,
            n_epochs=10,
            gae_lambda=0.95,
            gamma=0.9,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
        ),
        heads=dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64])),
    ),
}


def _schedule(value: Any) -> Any:
    if isinstance(value, tuple) and value[0] == "linear":
        start = value[1]
        return lambda progress: start * progress
    return value


def pretrain_encoder(task_name: str, seed: int, out_dir: str, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the task's pretraining preset with this seed; returns the encoder path and its numbers."""
    import torch as th

    th.set_num_threads(1)
    from recurrent_rl.supervised.pretrain import pretrain, resolve_config

    task = TASKS[task_name]
    config = resolve_config(task.preset, None, [*overrides, f"data.seed={seed}", f"train.seed={seed}"])
    result = pretrain(config, runs_dir=Path(out_dir) / "pretrain", verbose=False)
    return {"encoder": str(result.encoder_path), **result.metrics}


def train_agent(task_name: str, variant: str, seed: int, encoder: str | None) -> dict[str, Any]:
    """One PPO run; stops at the threshold. Returns the learning curve and the steps to threshold."""
    import torch as th

    th.set_num_threads(1)
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.supervised.data import make_env
    from recurrent_rl.supervised.encoder import encoder_policy_kwargs, load_encoder, read_encoder

    task = TASKS[task_name]
    env = make_vec_env(lambda: make_env(task.env_id), n_envs=task.n_envs, seed=seed)
    vecnorm = variant in ("scratch", "frozen-vecnorm", "finetuned-vecnorm")
    env = VecNormalize(env, norm_obs=vecnorm, norm_reward=True, gamma=task.ppo["gamma"])
    heads = dict(task.heads, activation_fn={"relu": th.nn.ReLU, "tanh": th.nn.Tanh}[task.heads["activation_fn"]])
    policy_kwargs = dict(memory="gru", hidden_size=64, critic_memory="separate", **heads)
    if variant != "scratch":
        policy_kwargs = encoder_policy_kwargs(encoder, **policy_kwargs)
    ppo = {k: _schedule(v) for k, v in task.ppo.items()}
    model = RecurrentPPO(
        "MlpGruPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu", stats_window_size=20, **ppo
    )
    if variant == "scratch-fixednorm":  # the statistics only; the weights stay as initialised
        model.policy.features_extractor.inputs.load_state_dict(read_encoder(encoder)["inputs"])
    elif variant != "scratch":
        load_encoder(
            model,
            encoder,
            freeze=variant.startswith("frozen"),
            critic=True,
            observation_statistics="vecnormalize" if vecnorm else "encoder",
        )

    class Curve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []
            self.reached: int | None = None

        def _on_step(self) -> bool:
            return self.reached is None  # False ends learn(): the threshold is reached

        def _on_rollout_end(self) -> None:
            episodes = self.model.ep_info_buffer
            if len(episodes) >= 20:
                mean = float(np.mean([e["r"] for e in episodes]))
                self.points.append((self.model.num_timesteps, mean))
                if mean >= task.threshold and self.reached is None:
                    self.reached = self.model.num_timesteps

    curve = Curve()
    started = time.perf_counter()
    model.learn(task.budget, callback=curve)
    return {
        "task": task_name,
        "variant": variant,
        "seed": seed,
        "reached": curve.reached,
        "curve": curve.points,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _run(job: tuple) -> dict[str, Any]:
    return train_agent(*job)


def summarize(
    results: list[dict[str, Any]], pretraining: dict[tuple[str, int], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per task and variant: total steps to the threshold (mean, median), runs that got there."""
    rows = []
    for task_name in dict.fromkeys(r["task"] for r in results):
        task = TASKS[task_name]
        baselines: dict[str, float] = {}
        for variant in BASELINES + PRETRAINED:
            runs = [r for r in results if r["task"] == task_name and r["variant"] == variant]
            if not runs:
                continue
            totals = []
            for r in runs:
                ppo_steps = r["reached"] if r["reached"] is not None else task.budget
                extra = pretraining[(task_name, r["seed"])]["transitions"] if variant in PRETRAINED else 0
                totals.append(ppo_steps + extra)
            mean = float(np.mean(totals))
            baselines[variant] = mean
            saving = {
                b: None if b not in baselines or variant in BASELINES else round(100 * (1 - mean / baselines[b]), 1)
                for b in BASELINES
            }
            transitions = [pretraining[(task_name, r["seed"])]["transitions"] for r in runs]
            rows.append(
                {
                    "task": task_name,
                    "variant": variant,
                    "threshold": task.threshold,
                    "reached": f"{sum(r['reached'] is not None for r in runs)}/{len(runs)}",
                    "mean_total_steps": round(mean),
                    "median_total_steps": round(float(np.median(totals))),
                    "pretraining_steps": 0 if variant not in PRETRAINED else round(float(np.mean(transitions))),
                    "fewer_steps_than": saving,
                    "totals": totals,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | variant | reached threshold | pretraining steps | total steps, mean | total steps, median "
        "| vs scratch | vs scratch-fixednorm |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = []
        for baseline in BASELINES:
            saving = r["fewer_steps_than"][baseline]
            cells.append("—" if saving is None else f"{saving:.1f}% fewer" if saving >= 0 else f"{-saving:.1f}% more")
        lines.append(
            f"| {r['task']} (≥ {r['threshold']:g}) | {r['variant']} | {r['reached']} | {r['pretraining_steps']:,} | "
            f"{r['mean_total_steps']:,} | {r['median_total_steps']:,} | {' | '.join(cells)} |"
        )
    table = "\n".join(lines)
    print(table)
    return table


def plot(results: list[dict[str, Any]], pretraining: dict[tuple[str, int], dict[str, Any]], path: Path) -> None:
    """Learning curves against total env steps (encoder runs start after their pretraining steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    colors = {
        "scratch": "tab:gray",
        "frozen": "tab:blue",
        "finetuned": "tab:orange",
        "scratch-fixednorm": "tab:green",
        "frozen-vecnorm": "tab:purple",
        "finetuned-vecnorm": "tab:red",
    }
    for ax, task_name in zip(axes[0], tasks):
        for r in (r for r in results if r["task"] == task_name):
            if not r["curve"]:
                continue
            offset = pretraining[(task_name, r["seed"])]["transitions"] if r["variant"] in PRETRAINED else 0
            steps, returns = zip(*r["curve"])
            label = r["variant"] if r["seed"] == min(x["seed"] for x in results) else None
            ax.plot(np.add(steps, offset), returns, color=colors[r["variant"]], alpha=0.7, lw=1.2, label=label)
            if r["reached"] is not None:
                ax.plot(r["reached"] + offset, returns[-1], "o", color=colors[r["variant"]], ms=4)
        ax.axhline(TASKS[task_name].threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax.set_title(f"{TASKS[task_name].env_id} (GRU 64)")
        ax.set_xlabel("environment steps, pretraining included")
        ax.set_ylabel("mean return, last 20 training episodes")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def report(results: list[dict[str, Any]], pretraining: dict[tuple[str, int], dict[str, Any]], out: Path) -> None:
    """Table (printed, table.md), raw numbers (results.json) and learning curves into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(results, pretraining)
    table = print_table(rows)
    by_run = {f"{t}/{s}": p for (t, s), p in pretraining.items()}
    (out / "results.json").write_text(json.dumps({"rows": rows, "runs": results, "pretraining": by_run}, indent=1))
    (out / "table.md").write_text(table + "\n")
    plot(results, pretraining, out / "learning_curves.png")


def combine(paths: list[str], out: Path) -> int:
    """Report the union of earlier runs (the same seeds' pretraining is the same: seeded)."""
    results, pretraining = [], {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        results += data["runs"]
        for key, value in data["pretraining"].items():
            task, seed = key.split("/")
            pretraining[(task, int(seed))] = value
    report(results, pretraining, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/benchmark-pretraining")
    parser.add_argument(
        "--pretrain-set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a pretraining preset key for every task, e.g. data.n_steps=2000",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="RESULTS_JSON",
        help="run nothing: table and plot of the union of earlier results.json files",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.combine:
        return combine(args.combine, out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seeds = range(args.seeds)
    with ProcessPoolExecutor(args.workers) as pool:
        keys = [(t, s) for t in args.tasks for s in seeds]
        pretraining = dict(
            zip(
                keys,
                pool.map(pretrain_encoder, *zip(*keys), [str(out)] * len(keys), [tuple(args.pretrain_set)] * len(keys)),
            )
        )
        print(
            f"pretraining done ({time.perf_counter() - started:.0f} s):",
            {f"{t}/{s}": round(p["val_r2"], 3) for (t, s), p in pretraining.items()},
            flush=True,
        )
        # the longest jobs first, so the pool does not end on one straggler
        order = sorted(
            args.variants,
            key=("scratch-fixednorm", "finetuned", "scratch", "finetuned-vecnorm", "frozen-vecnorm", "frozen").index,
        )
        jobs = [(t, v, s, pretraining[(t, s)]["encoder"]) for v in order for t in args.tasks for s in seeds]
        results = []
        for result in pool.map(_run, jobs):
            results.append(result)
            print(
                f"{result['task']} {result['variant']} seed {result['seed']}: reached at {result['reached']} "
                f"({result['seconds']} s)",
                flush=True,
            )
    report(results, pretraining, out)
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
