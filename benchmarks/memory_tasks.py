"""Learning on the memory tasks: RecurrentPPO's memories against MLP PPO and a 4-frame-stacked MLP PPO.

For each task, the GRU agent is the shipped preset (``recurrent-rl presets``: its budget, PPO
settings and heads). Another memory (``lstm``, ``mingru``, ``minlstm``, ``ffm``, ``transformer``) takes its
own shipped preset for the task where there is one (``repeat-first-hard-transformer``), else the
GRU preset with only ``policy_kwargs.memory`` changed (the transformer without the preset's
``gate_bias`` and with a window that covers the task's delay, ``TRANSFORMER_WINDOW``; ffm without the
``gate_bias``). The MLP
agents use the same budget, PPO settings and heads without the memory. ``--budget`` gives every
agent the same number of steps. Several seeds; the score is the mean deterministic return (and
success rate where the env defines one) over 100 evaluation episodes, next to the task's exact
optimal, random and best-memoryless returns. With ``--eval-every`` the agents are also evaluated
(20 episodes) during training, and the first step and training second (evaluations excluded) at
the target return (``--target``, 90% of optimal) are reported.

    python -m benchmarks.memory_tasks                      # every task, 3 seeds
    python -m benchmarks.memory_tasks --tasks TMaze-v0 --seeds 1
    python -m benchmarks.memory_tasks --tasks TMaze-L50-v0 --agents gru --set policy_kwargs.gate_bias=3
    python -m benchmarks.memory_tasks --tasks TMaze-L100-v0 --agents gru mingru transformer --seeds 1
    # the long-horizon study: five tasks, five contenders, the same budget per task, steps and seconds to 90%
    python -m benchmarks.memory_tasks --tasks long --agents gru lstm mingru transformer mlp-stack4 \
        --budget 150000 150000 200000 100000 150000 --eval-every 10000

Beside the return, the wall-clock seconds of training (two runs side by side on two cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch as th

# task -> shipped preset
TASKS: dict[str, str] = {
    "TMaze-v0": "tmaze-gru",
    "TMaze-L50-v0": "tmaze-l50-gru",
    "RepeatPrevious-k4-v0": "repeat-previous-k4-gru",
    "RepeatFirst-v0": "repeat-first-gru",
    "CountRecall-v0": "count-recall-gru",
    "RepeatFirst-Medium-v0": "repeat-first-medium-gru",
    # long horizons (the presets are untuned GRU settings; not in the default list)
    "TMaze-L100-v0": "tmaze-l100-gru",
    "TMaze-L200-v0": "tmaze-l200-gru",
    "RepeatFirst-Hard-v0": "repeat-first-hard-gru",
    "RepeatPrevious-k16-v0": "repeat-previous-k16-gru",
    "CountRecall-Medium-v0": "count-recall-medium-gru",
}
DEFAULT_TASKS = ("TMaze-v0", "TMaze-L50-v0", "RepeatPrevious-k4-v0", "RepeatFirst-v0", "CountRecall-v0")
MEMORY_AGENTS = ("gru", "lstm", "mingru", "minlstm", "ffm", "transformer")
# the transformer's window covers the task's delay where the shipped window (32) does not
TRANSFORMER_WINDOW = {"TMaze-L100-v0": 128, "TMaze-L200-v0": 256, "RepeatFirst-Hard-v0": 256}
LONG_STUDY = ("TMaze-L100-v0", "TMaze-L200-v0", "RepeatFirst-Hard-v0", "RepeatPrevious-k16-v0", "CountRecall-Medium-v0")
AGENTS = (*MEMORY_AGENTS, "mlp", "mlp-stack4")


def evaluate(model, agent: str, make, episodes: int, seed: int) -> tuple[float, float | None]:
    """Mean deterministic return (and success rate) over the first episode of each of ``episodes`` envs.

    The envs are stepped as one batch.
    """
    env = make(episodes, seed)
    obs, state = env.reset(), None
    starts = np.ones(episodes, dtype=bool)
    totals, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    returns, successes = np.zeros(episodes), np.full(episodes, np.nan)
    while not done.all():
        if agent in MEMORY_AGENTS:
            action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        else:
            action, _ = model.predict(obs, deterministic=True)
        obs, reward, starts, infos = env.step(action)
        totals += np.where(done, 0.0, reward)
        for i in np.flatnonzero(starts & ~done):
            returns[i], done[i] = totals[i], True
            if "success" in infos[i]:
                successes[i] = float(infos[i]["success"])
    env.close()
    return float(returns.mean()), (None if np.isnan(successes).all() else float(np.nanmean(successes)))


def agent_config(task: str, agent: str, overrides: tuple[str, ...]):
    """The agent's settings.

    Its own shipped preset for the task where there is one, else the GRU preset with the memory swapped.
    """
    from recurrent_rl.config.presets import load_preset, preset_names

    own = TASKS[task].removesuffix("-gru") + f"-{agent}"
    if agent in MEMORY_AGENTS and agent != "gru" and own in preset_names():
        return load_preset(own, overrides)
    if agent in MEMORY_AGENTS and agent != "gru":
        overrides = (f"policy_kwargs.memory={agent}", *overrides)
        if agent in ("transformer", "ffm"):  # no gate that keeps a state: no gate_bias
            overrides = ("policy_kwargs.gate_bias=null", *overrides)
        if agent == "transformer":
            if task in TRANSFORMER_WINDOW:
                overrides = (f"policy_kwargs.memory_kwargs.memory_length={TRANSFORMER_WINDOW[task]}", *overrides)
    return load_preset(TASKS[task], overrides)


def run(job: tuple[str, str, int, int, tuple[str, ...], int, float]) -> dict[str, Any]:
    task, agent, seed, budget, overrides, eval_every, target = job
    th.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    import recurrent_rl.envs  # noqa: F401
    from recurrent_rl import RecurrentPPO

    config = agent_config(task, agent, overrides)
    env_id, n_envs = config.env, config.n_envs
    kwargs = config.algorithm_kwargs()
    kwargs.pop("policy")

    def make(n: int, s: int):
        env = make_vec_env(env_id, n_envs=n, seed=s)
        return VecFrameStack(env, 4) if agent == "mlp-stack4" else env

    class TimeToTarget(BaseCallback):
        """Evaluates every ``eval_every`` steps; records the first step and training second at the target return."""

        def __init__(self) -> None:
            super().__init__()
            self.eval_seconds, self.next_eval, self.reached = 0.0, eval_every, None

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if not eval_every or self.reached or self.num_timesteps < self.next_eval:
                return
            self.next_eval += eval_every
            tic = time.perf_counter()
            ret, _ = evaluate(self.model, agent, make, 20, seed + 20_000)
            self.eval_seconds += time.perf_counter() - tic
            if ret >= target:
                self.reached = (self.num_timesteps, time.perf_counter() - start - self.eval_seconds)

    callback = TimeToTarget()
    start = time.perf_counter()
    if agent in MEMORY_AGENTS:
        model = RecurrentPPO(config.policy, make(n_envs, seed), seed=seed, **kwargs)
    else:
        kwargs.pop("sequence_length")
        memoryless = ("memory", "hidden_size", "num_layers", "critic_memory", "gate_bias", "backend", "memory_kwargs")
        kwargs["policy_kwargs"] = {k: v for k, v in kwargs["policy_kwargs"].items() if k not in memoryless}
        model = PPO("MlpPolicy", make(n_envs, seed), seed=seed, **kwargs)
    model.learn(budget, callback=callback)
    seconds = time.perf_counter() - start - callback.eval_seconds
    ret, success = evaluate(model, agent, make, 100, seed + 10_000)
    return dict(task=task, agent=agent, seed=seed, ret=ret, success=success, seconds=seconds, reached=callback.reached)


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks",
        nargs="*",
        default=list(DEFAULT_TASKS),
        choices=[*TASKS, "long"],
        help="task names, or `long` for the long-horizon study's five tasks",
    )
    parser.add_argument("--agents", nargs="*", default=["gru", "mlp", "mlp-stack4"], choices=AGENTS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset key on every task, as in `recurrent-rl train --set` (tuning)",
    )
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget (quick checks)")
    parser.add_argument(
        "--budget",
        type=int,
        nargs="*",
        default=[],
        metavar="STEPS",
        help="the same budget for every agent: one figure for every task, or one per task",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="evaluate every STEPS (20 episodes) to find the steps and seconds to the target",
    )
    parser.add_argument("--target", type=float, default=0.9, help="target as a fraction of the optimal return")
    args = parser.parse_args(argv)
    from recurrent_rl.config.presets import load_preset
    from recurrent_rl.envs import reference_returns

    tasks = [t for name in args.tasks for t in (LONG_STUDY if name == "long" else (name,))]
    if len(args.budget) not in (0, 1, len(tasks)):
        parser.error(f"--budget takes one figure or one per task ({len(tasks)}), got {len(args.budget)}")
    overrides = tuple(args.overrides)
    budgets = {task: int(load_preset(TASKS[task], overrides).n_timesteps * args.budget_scale) for task in tasks}
    if args.budget:
        given = args.budget * len(tasks) if len(args.budget) == 1 else args.budget
        budgets = {task: int(b * args.budget_scale) for task, b in zip(tasks, given)}
    refs = {task: reference_returns(f"pomdp/{task}") for task in tasks}
    command = " ".join(["python -m benchmarks.memory_tasks", *(sys.argv[1:] if argv is None else argv)])
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, `{command}`", flush=True)
    # seed-major order: a study stopped early has every agent on the first seeds
    jobs = [
        (task, agent, seed, budgets[task], overrides, args.eval_every, args.target * refs[task]["optimal"])
        for seed in range(args.seeds)
        for task in tasks
        for agent in args.agents
    ]
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(run, jobs):
            results.append(result)
            print(
                f"{result['task']:22s} {result['agent']:10s} seed {result['seed']}: return {result['ret']:.2f}"
                f" success {result['success']} ({result['seconds']:.0f} s) reached {result['reached']}",
                flush=True,
            )

    target = f"{args.target:.0%} of optimal"
    print(
        f"\n| task | budget | optimal | random | memoryless | agent | return (mean ± sd) | success | "
        f"fraction of optimal | seconds | seeds at {target} | steps to it | seconds to it |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for task in tasks:
        ref = refs[task]
        for agent in args.agents:
            rows = [r for r in results if r["task"] == task and r["agent"] == agent]
            rets = [r["ret"] for r in rows]
            succ = [r["success"] for r in rows if r["success"] is not None]
            reached = [r["reached"] for r in rows if r["reached"]]
            steps_to = f"{statistics.mean(s for s, _ in reached) / 1000:.0f}k" if reached else "-"
            seconds_to = f"{statistics.mean(t for _, t in reached):.0f}" if reached else "-"
            print(
                f"| {task} | {budgets[task] // 1000}k | {ref['optimal']:g} | {ref['random']:.2f} | "
                f"{ref['memoryless']:.2f} | {agent} | {mean_spread(rets)} | "
                f"{mean_spread(succ) if succ else '-'} | {statistics.mean(rets) / ref['optimal']:.2f} | "
                f"{statistics.mean(r['seconds'] for r in rows):.0f} | "
                f"{f'{len(reached)}/{len(rows)}' if args.eval_every else '-'} | "
                f"{steps_to} | {seconds_to} |"
            )


if __name__ == "__main__":
    main()
