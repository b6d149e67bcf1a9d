"""RecurrentPPO at sb3-contrib's own learning-test settings, over seeds, one process.

sb3-contrib's slow RecurrentPPO test: CartPole without velocities (500-step limit), 8 envs under
VecNormalize, n_steps 128, learning rate 7e-4, batch 256, 10 epochs, gae_lambda 0.98,
max_grad_norm 1, a critic LSTM of 64 units, pi [] / vf [64], ortho_init off, 50k steps; it passes
when the mean return of 10 episodes on the training env reaches 450.

    python benchmarks/contrib_settings.py --seeds 1 2 3 4 5 6
    python benchmarks/contrib_settings.py --seeds 1 --gate-bias 0 --sequence-length 32
    python benchmarks/contrib_settings.py --seeds 1 --sb3-contrib   # sb3-contrib's RecurrentPPO itself

Prints the final mean return per seed and how many seeds pass 450.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

THRESHOLD = 450


def run(seed: int, steps: int, args: argparse.Namespace) -> float:
    env = VecNormalize(make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=8, seed=seed))
    policy_kwargs: dict[str, Any] = dict(
        net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False, enable_critic_lstm=True
    )
    kwargs: dict[str, Any] = dict(
        n_steps=128, learning_rate=7e-4, batch_size=256, seed=seed, n_epochs=10, max_grad_norm=1, gae_lambda=0.98
    )
    if args.sb3_contrib:
        from sb3_contrib import RecurrentPPO as ContribPPO

        model: Any = ContribPPO("MlpLstmPolicy", env, policy_kwargs=policy_kwargs, **kwargs)
    else:
        from recurrent_rl import RecurrentPPO

        if args.gate_bias is not None:
            policy_kwargs["gate_bias"] = args.gate_bias
        if args.sequence_length is not None:
            kwargs["sequence_length"] = args.sequence_length
        model = RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=policy_kwargs, **kwargs)
    model.learn(steps)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=10)  # as the test: the training env
    return float(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--gate-bias", type=float, default=None, help="LSTM forget-gate bias (default: ours, 1)")
    parser.add_argument("--sequence-length", type=int, default=None, help="BPTT chunk length (default n_steps)")
    parser.add_argument("--sb3-contrib", action="store_true", help="run sb3-contrib's RecurrentPPO instead")
    args = parser.parse_args()
    th.set_num_threads(1)
    scores = []
    for seed in args.seeds:
        start = time.perf_counter()
        scores.append(run(seed, args.steps, args))
        print(f"seed {seed}: {scores[-1]:.1f} ({time.perf_counter() - start:.0f} s)", flush=True)
    passed = sum(score >= THRESHOLD for score in scores)
    print(f"{passed} of {len(scores)} seeds reach {THRESHOLD}; mean {np.mean(scores):.1f}", flush=True)


if __name__ == "__main__":
    main()
