"""Learning on the memory tasks: RecurrentPPO's memories against MLP PPO and a 4-frame-stacked MLP PPO.

For each task, the GRU agent is the shipped preset (``recurrent-rl presets``: its budget, PPO
settings and heads); the other memories (``lstm``, ``mingru``, ``minlstm``, ``transformer``) take
the same preset with only ``policy_kwargs.memory`` changed (the transformer without the preset's
``gate_bias``); the MLP agents use the same budget, PPO settings and heads without the memory. Several seeds; the score is the mean deterministic return (and success rate where the
env defines one) over 100 evaluation episodes, next to the task's exact optimal, random and
best-memoryless returns.

    python -m benchmarks.memory_tasks                      # every task, 3 seeds
    python -m benchmarks.memory_tasks --tasks TMaze-L10-v0 --seeds 1
    python -m benchmarks.memory_tasks --tasks TMaze-L50-v0 --agents gru --set policy_kwargs.gate_bias=3
    python -m benchmarks.memory_tasks --tasks TMaze-L100-v0 RepeatFirst-Hard-v0 --agents gru mingru transformer --seeds 1

Beside the return, the wall-clock seconds of training (two runs side by side on two cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch as th

# task -> shipped preset
TASKS: dict[str, str] = {
    "TMaze-L10-v0": "tmaze-l10-gru",
    "TMaze-L50-v0": "tmaze-l50-gru",
    "RepeatPrevious-k4-v0": "repeat-previous-k4-gru",
    "RepeatFirst-Easy-v0": "repeat-first-easy-gru",
    "CountRecall-Easy-v0": "count-recall-easy-gru",
    # long horizons (the presets are untuned GRU settings; not in the default list)
    "TMaze-L100-v0": "tmaze-l100-gru",
    "RepeatFirst-Hard-v0": "repeat-first-hard-gru",
    "RepeatPrevious-k16-v0": "repeat-previous-k16-gru",
    "CountRecall-Medium-v0": "count-recall-medium-gru",
}
DEFAULT_TASKS = ("TMaze-L10-v0", "TMaze-L50-v0", "RepeatPrevious-k4-v0", "RepeatFirst-Easy-v0", "CountRecall-Easy-v0")
MEMORY_AGENTS = ("gru", "lstm", "mingru", "minlstm", "transformer")
AGENTS = (*MEMORY_AGENTS, "mlp", "mlp-stack4")


def run(job: tuple[str, str, int, int, tuple[str, ...]]) -> dict[str, Any]:
    task, agent, seed, budget, overrides = job
    th.set_num_threads(1)
    import recurrent_rl.envs  # noqa: F401
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from recurrent_rl import RecurrentPPO

    from recurrent_rl.runs.presets import load_preset

    if agent in MEMORY_AGENTS and agent != "gru":
        overrides = (*overrides, f"policy_kwargs.memory={agent}")
        if agent == "transformer":
            overrides = (*overrides, "policy_kwargs.gate_bias=null")
    config = load_preset(TASKS[task], overrides)
    env_id, n_envs = config.env, config.n_envs
    kwargs = config.algorithm_kwargs()
    kwargs.pop("policy")

    def make(n: int, s: int):
        env = make_vec_env(env_id, n_envs=n, seed=s)
        return VecFrameStack(env, 4) if agent == "mlp-stack4" else env

    start = time.perf_counter()
    if agent in MEMORY_AGENTS:
        model = RecurrentPPO(config.policy, make(n_envs, seed), seed=seed, **kwargs)
    else:
        kwargs.pop("sequence_length")
        memoryless = ("memory", "hidden_size", "num_layers", "critic_memory", "gate_bias", "backend", "memory_kwargs")
        kwargs["policy_kwargs"] = {k: v for k, v in kwargs["policy_kwargs"].items() if k not in memoryless}
        model = PPO("MlpPolicy", make(n_envs, seed), seed=seed, **kwargs)
    model.learn(budget)
    seconds = time.perf_counter() - start

    env = make(1, seed + 10_000)
    obs, state, starts = env.reset(), None, np.ones(1, dtype=bool)
    returns, successes, total = [], [], 0.0
    while len(returns) < 100:
        if agent in MEMORY_AGENTS:
            action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        else:
            action, _ = model.predict(obs, deterministic=True)
        obs, reward, starts, infos = env.step(action)
        total += float(reward[0])
        if starts[0]:
            returns.append(total)
            total = 0.0
            if "success" in infos[0]:
                successes.append(float(infos[0]["success"]))
    return dict(task=task, agent=agent, seed=seed, ret=float(np.mean(returns)),
                success=float(np.mean(successes)) if successes else None, seconds=seconds)  # fmt: skip


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=list(DEFAULT_TASKS), choices=list(TASKS))
    parser.add_argument("--agents", nargs="*", default=["gru", "mlp", "mlp-stack4"], choices=AGENTS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset key on every task, as in `recurrent-rl train --set` (tuning)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every budget (quick checks)")
    args = parser.parse_args(argv)
    from recurrent_rl.envs import reference_returns

    from recurrent_rl.runs.presets import load_preset

    overrides = tuple(args.overrides)
    budgets = {task: int(load_preset(TASKS[task], overrides).n_timesteps * args.budget_scale) for task in args.tasks}
    # agent-major order: the memory agent's results come first
    jobs = [(task, agent, seed, budgets[task], overrides)
            for agent in args.agents for task in args.tasks for seed in range(args.seeds)]  # fmt: skip
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(run, jobs):
            results.append(result)
            print(f"{result['task']:22s} {result['agent']:10s} seed {result['seed']}: return {result['ret']:.2f}"
                  f" success {result['success']} ({result['seconds']:.0f} s)", flush=True)  # fmt: skip

    print("\n| task | budget | optimal | random | memoryless | agent | return (mean ± sd) | success | fraction of optimal | seconds |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for task in args.tasks:
        ref = reference_returns(f"pomdp/{task}")
        for agent in args.agents:
            rows = [r for r in results if r["task"] == task and r["agent"] == agent]
            rets = [r["ret"] for r in rows]
            succ = [r["success"] for r in rows if r["success"] is not None]
            print(f"| {task} | {budgets[task] // 1000}k | {ref['optimal']:g} | {ref['random']:.2f} | "
                  f"{ref['memoryless']:.2f} | {agent} | {mean_spread(rets)} | "
                  f"{mean_spread(succ) if succ else '-'} | {statistics.mean(rets) / ref['optimal']:.2f} | "
                  f"{statistics.mean(r['seconds'] for r in rows):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
