"""Device benchmark: training throughput on the CPU speed backend against CUDA, side by side.

The check behind ``device: auto`` (:mod:`recurrent_rl.nets.devices`): for each memory (GRU, LSTM,
minGRU, transformer) and two sizes, end-to-end ``learn()`` env-steps/s on the CPU (one torch
thread, ``backend="auto"``, which takes the speed backend there) and on CUDA (``backend="auto"``
takes plain torch), and their ratio. ``auto`` keeps a size on the CPU unless CUDA is faster there.

- ``default``: the zoo's CartPoleNoVel settings of ``benchmarks.core`` (8 envs, n_steps 32,
  batch 256, 20 epochs, 64-unit memories, separate critic memory);
- ``large``: the same with 256-unit memories and 64 envs (batch 2048).

Without CUDA only the CPU column is measured (its per-step cost still shows how the CPU's work
grows with the size). All figures come from one run: the CUDA contenders one after the other in
the main process, the CPU ones meanwhile in ``--jobs`` processes of one torch thread each (on
a machine with at least ``--jobs`` + 1 cores they do not share one; on fewer, use ``--jobs 1``).

    python -m benchmarks.devices                 # everything (about 2 minutes on a 16-core H100 machine)
    python -m benchmarks.devices --jobs 1        # on a 2-core machine: one CPU contender at a time
    python -m benchmarks.devices --sizes default --memories gru
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch as th

from benchmarks.machine import cpu_model

ENV_ID = "pomdp/CartPoleNoVel-v1"
MEMORIES = ("gru", "lstm", "mingru", "transformer")
SETTINGS = dict(n_steps=32, n_epochs=20, gae_lambda=0.8, gamma=0.98, ent_coef=0.0)
HEADS = dict(ortho_init=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[64], vf=[64]))
SIZES = {
    "default": dict(hidden_size=64, n_envs=8, batch_size=256),
    "large": dict(hidden_size=256, n_envs=64, batch_size=2048),
}


def make_model(memory: str, size: str, device: str) -> Any:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from recurrent_rl import RecurrentPPO

    s = SIZES[size]
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=s["n_envs"], seed=0), gamma=SETTINGS["gamma"])
    kwargs = dict(memory=memory, hidden_size=s["hidden_size"], critic_memory="separate", **HEADS)
    return RecurrentPPO(
        "MlpGruPolicy",
        env,
        batch_size=s["batch_size"],
        seed=0,
        device=device,
        torch_threads=1,
        policy_kwargs=kwargs,
        **SETTINGS,
    )


def throughput(memory: str, size: str, device: str, rollouts: int) -> float:
    """Env-steps/s of ``rollouts`` rollouts and updates after one to warm up."""
    model = make_model(memory, size, device)
    per_rollout = SETTINGS["n_steps"] * SIZES[size]["n_envs"]
    model.learn(per_rollout)  # warm-up: lazy inits, CUDA kernels, the compiled layers
    if device == "cuda":
        th.cuda.synchronize()
    start = time.perf_counter()
    model.learn(rollouts * per_rollout, reset_num_timesteps=False)
    if device == "cuda":
        th.cuda.synchronize()
    return rollouts * per_rollout / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", nargs="+", default=list(MEMORIES), choices=MEMORIES)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rollouts", type=int, default=2, help="timed rollouts per contender (default: 2)")
    parser.add_argument(
        "--jobs", type=int, default=4, help="CPU contenders measured at a time, each in its own process (default: 4)"
    )
    args = parser.parse_args(argv)
    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    cuda = th.cuda.is_available()
    rows = [(size, memory) for size in args.sizes for memory in args.memories]
    # the CPU contenders in processes of their own, one torch thread each, up to --jobs at a time
    # (spawned: no CUDA context crosses a fork); then the CUDA ones here, one after the other
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        cpu_runs = [pool.submit(throughput, memory, size, "cpu", args.rollouts) for size, memory in rows]
        gpu = {row: throughput(row[1], row[0], "cuda", args.rollouts) if cuda else float("nan") for row in rows}
        cpu = {row: run.result() for row, run in zip(rows, cpu_runs, strict=True)}
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"CPU: {cpu_model()}; torch {th.__version__}, 1 torch thread on the CPU")
    print(f"GPU: {th.cuda.get_device_name(0) if cuda else 'none (CUDA not available: CPU column only)'}")
    print(f"{'memory':<12} {'size':<8} {'cpu steps/s':>12} {'cuda steps/s':>13} {'cuda/cpu':>9}  auto picks")
    from recurrent_rl.nets.devices import choose_device

    for size, memory in rows:
        c, g = cpu[size, memory], gpu[size, memory]
        picked = choose_device(None, {"hidden_size": SIZES[size]["hidden_size"]}, cuda=True).device.type
        ratio = f"{g / c:9.2f}" if cuda else f"{'-':>9}"
        print(f"{memory:<12} {size:<8} {c:12.0f} {g:13.0f} {ratio}  {picked}", flush=True)
    print("cuda/cpu > 1: CUDA is faster; auto should pick cuda exactly on those rows (recurrent_rl/nets/devices.py)")


if __name__ == "__main__":
    main()
