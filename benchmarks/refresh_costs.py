"""What ``state_refresh`` and ``burn_in`` cost in training throughput, side by side in one run.

The default task (the preset ``cartpole-novel-gru``: 8 envs, rollouts of 128 steps, one minibatch
of the whole rollout, 18 epochs) trained for ``--steps`` env steps (``learn()`` only, end to end)
with each variant, round after round (the variants interleaved, so a busy machine slows them
alike); each figure is the median over the rounds, and beside it the ratio to the plain preset.

The preset's chunks are whole 128-step rollouts (one chunk per env row), where a refresh has no
chunk start to recompute; the ``t32`` variants cut them into 32-step chunks (four per row), where
it recomputes three of four.

    python -m benchmarks.refresh_costs                     # every variant, 3 rounds of 16k steps
    python -m benchmarks.refresh_costs --rounds 5 --variants plain refresh+burnin16
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch as th

VARIANTS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "refresh": ("state_refresh=true",),
    "burnin16": ("burn_in=16",),
    "refresh+burnin16": ("state_refresh=true", "burn_in=16"),
    "context32": ("burn_in=32", "burn_in_gradient=true"),
    "t32": ("sequence_length=32",),
    "t32+refresh": ("sequence_length=32", "state_refresh=true"),
    "t32+refresh+burnin16": ("sequence_length=32", "state_refresh=true", "burn_in=16"),
}
PRESET = "cartpole-novel-gru"


def throughput(overrides: tuple[str, ...], steps: int, seed: int) -> float:
    """env-steps/s of ``learn(steps)`` with the preset plus ``overrides``."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.config.presets import load_preset

    config = load_preset(PRESET, overrides)
    kwargs = config.algorithm_kwargs()
    policy = kwargs.pop("policy")
    env = VecNormalize(make_vec_env(config.env, n_envs=config.n_envs, seed=seed), gamma=config.gamma)
    model = RecurrentPPO(policy, env, seed=seed, **kwargs)
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=16_384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    command = " ".join(["python -m benchmarks.refresh_costs", *(sys.argv[1:] if argv is None else argv)])
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {model_name}, torch {th.__version__}, 1 thread, `{command}`")
    throughput(VARIANTS["plain"], 2048, 0)  # warm-up: imports, compiled layers
    results: dict[str, list[float]] = {name: [] for name in args.variants}
    for round_ in range(args.rounds):
        for name in args.variants:
            results[name].append(throughput(VARIANTS[name], args.steps, round_))
    plain = statistics.median(results["plain"]) if "plain" in results else None
    print("\n| variant | overrides | env-steps/s (median) | relative to plain |")
    print("|---|---|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        ratio = f"{median / plain:.2f}" if plain else "-"
        print(f"| {name} | {', '.join(VARIANTS[name]) or '-'} | {median:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
