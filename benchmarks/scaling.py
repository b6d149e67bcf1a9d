"""Scaling benchmark: one agent's training throughput with its envs in one process, in subprocesses,
and in 1 to 8 Ray rollout runners, against RLlib's PPO with an LSTM, on a slow variant of the
default task.

The task is the default preset's (GRU on ``pomdp/CartPoleNoVel-v1``, 8 envs, 128-step rollouts,
one minibatch of 1,024 steps, 18 epochs, VecNormalize), each env step made slower by
:class:`recurrent_rl.envs.StepCost`: 10 ms or 2 ms of sleep (a simulator or a remote process that
leaves the CPU free), or 2 ms of CPU work, or not at all (``none``: the ordinary env). Every contender
has 8 envs in all:

- ``dummy``: SB3's ``DummyVecEnv`` in the learner's process (the in-process path);
- ``subproc``: SB3's ``SubprocVecEnv``, one process per env (``forkserver``);
- ``runners-N``: N Ray rollout runners of 8/N envs each (``recurrent_rl.runners.RunnerVecEnv``),
  on a local multi-node Ray cluster started for the benchmark (``ray.cluster_utils.Cluster``,
  4 nodes declaring 2 CPUs each);
- ``rllib-0`` / ``rllib-8``: RLlib's PPO (new API stack, ``DefaultModelConfig(use_lstm=True)``)
  with 8 envs in its local env runner, or 8 remote env runners of 1 env each, at the same
  settings (LSTM of 64 units, heads [64] ReLU, rollout fragments of 128 steps, train batch and
  minibatch 1,024, 18 epochs, the same learning rate, gamma and lambda, ``max_seq_len`` 128 =
  our chunk length). RLlib pins another Gymnasium than this package's lock, so it runs from its
  own virtual environment, made by ``bash benchmarks/setup_rllib.sh`` (``.venv-rllib``), in a
  subprocess (``benchmarks/scaling_rllib.py``); without it these rows are left out.

Each contender trains one warm-up iteration, then ``--iterations`` more, timed: env-steps/s
including the update. Each figure is also shown as a fraction of the collection limit, the rate
at which its envs could step if nothing else took time (envs x 1000 / latency in ms).

    bash benchmarks/setup_rllib.sh                   # once: RLlib's own venv (.venv-rllib)
    python -m benchmarks.scaling                     # 10 ms, 2 ms, CPU and none, every contender (~20 min)
    python -m benchmarks.scaling --costs sleep10 --iterations 3 --contenders dummy runners-8 rllib-8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RLLIB_PYTHON = ROOT / ".venv-rllib" / "bin" / "python"
N_ENVS = 8
PRESET = "cartpole-novel-gru"
# the step cost of each variant: seconds, and whether they are burnt on the CPU (else slept); none: the ordinary env
COSTS = {"sleep10": (0.010, False), "sleep2": (0.002, False), "cpu2": (0.002, True), "none": (0.0, False)}
CONTENDERS = ("dummy", "subproc", "runners-1", "runners-2", "runners-4", "runners-8", "rllib-0", "rllib-8")


@dataclass(frozen=True)
class SlowEnv:
    """Makes the default task with a step cost (picklable, so subprocesses and runners can make it)."""

    seconds: float
    busy: bool
    env_id: str = "pomdp/CartPoleNoVel-v1"

    def __call__(self) -> Any:
        import gymnasium as gym

        import recurrent_rl.envs  # noqa: F401  registers pomdp/ in this process
        from recurrent_rl.envs import StepCost

        return StepCost(gym.make(self.env_id), self.seconds, busy=self.busy)


def build_model(contender: str, env_fn: SlowEnv, address: str | None) -> tuple[Any, Any]:
    """(model, what to close) for one of our contenders."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.config.presets import load_preset
    from recurrent_rl.runners import RunnerVecEnv

    config = load_preset(PRESET)
    if contender == "dummy":
        venv: Any = make_vec_env(env_fn, n_envs=N_ENVS, seed=0)
    elif contender == "subproc":
        venv = make_vec_env(
            env_fn, n_envs=N_ENVS, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "forkserver"}
        )
    else:
        count = int(contender.split("-")[1])
        venv = RunnerVecEnv(env_fn, count=count, envs_per_runner=N_ENVS // count, address=address or "local")
    closer = venv
    env = VecNormalize(venv, gamma=config.gamma)
    model = RecurrentPPO(env=env, seed=0, torch_threads=1, **{**config.algorithm_kwargs(), "device": "cpu"})
    return model, closer


def ours(contender: str, env_fn: SlowEnv, iterations: int, address: str | None) -> float:
    model, closer = build_model(contender, env_fn, address)
    try:
        batch = model.n_steps * N_ENVS
        model.learn(batch)  # warm-up: processes started, kernels compiled, runners built
        started = time.perf_counter()
        model.learn(batch * iterations, reset_num_timesteps=False)
        return batch * iterations / (time.perf_counter() - started)
    finally:
        closer.close()


def rllib(contender: str, cost: str, iterations: int) -> float | None:
    if not RLLIB_PYTHON.exists():
        return None
    seconds, busy = COSTS[cost]
    runners = int(contender.split("-")[1])
    command = [str(RLLIB_PYTHON), "-m", "benchmarks.scaling_rllib", "--seconds", str(seconds)]
    command += ["--runners", str(runners), "--iterations", str(iterations)] + (["--busy"] if busy else [])
    # its own Ray runtime: not the benchmark's cluster, whose address Ray left in the environment
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        print(f"{contender}: RLlib failed:\n{result.stderr[-3000:]}", file=sys.stderr)
        return None
    return float(json.loads(lines[-1])["env_steps_per_s"])


def start_cluster(nodes: int = 4, cpus: int = 2) -> Any:
    """A local multi-node Ray cluster (each node its own raylet), connected."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    return cluster


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--costs", nargs="+", choices=list(COSTS), default=list(COSTS))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations of 1,024 steps (default: 3)")
    parser.add_argument("--nodes", type=int, default=4, help="nodes of the local Ray cluster (default: 4)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    print(f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, python -m benchmarks.scaling {' '.join(argv or sys.argv[1:])}")
    cluster = start_cluster(args.nodes) if any(c.startswith("runners") for c in args.contenders) else None
    figures: dict[str, dict[str, float | None]] = {}
    try:
        for cost in args.costs:
            seconds, busy = COSTS[cost]
            env_fn = SlowEnv(seconds, busy)
            figures[cost] = {}
            for contender in args.contenders:
                if contender.startswith("rllib"):
                    rate = rllib(contender, cost, args.iterations)
                else:
                    rate = ours(contender, env_fn, args.iterations, cluster.address if cluster else None)
                figures[cost][contender] = rate
                shown = (
                    "not run (no .venv-rllib, or RLlib failed: see above)"
                    if rate is None
                    else f"{rate:8.0f} env-steps/s"
                )
                print(f"{cost:8s} {contender:10s} {shown}", flush=True)
    finally:
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    print_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


def print_table(figures: dict[str, dict[str, float | None]]) -> None:
    for cost, rows in figures.items():
        seconds, busy = COSTS[cost]
        limit = N_ENVS / seconds if seconds else None  # envs x 1000 / latency in ms; none: no limit
        dummy = rows.get("dummy")
        rllib_same = {c: rows.get(f"rllib-{c.split('-')[1]}") for c in rows if c.startswith("runners")}
        kind = "CPU" if busy else "sleep"
        if limit is None:
            print(f"\n{cost}: the ordinary env (no step cost)")
        else:
            print(f"\n{cost}: {seconds * 1e3:g} ms of {kind} per step, collection limit {limit:.0f} env-steps/s")
        print("| contender | env-steps/s | x in-process | x RLlib, same runners | fraction of the limit |")
        print("|---|---:|---:|---:|---:|")
        for contender, rate in rows.items():
            if rate is None:
                continue
            versus_dummy = f"{rate / dummy:.2f}" if dummy else "-"
            peer = rllib_same.get(contender) if contender.startswith("runners") else rows.get("rllib-0")
            versus_rllib = f"{rate / peer:.2f}" if peer and not contender.startswith("rllib") else "-"
            fraction = f"{rate / limit:.2f}" if limit else "-"
            print(f"| {contender} | {rate:.0f} | {versus_dummy} | {versus_rllib} | {fraction} |")


if __name__ == "__main__":
    main()
