"""Action masking with memory on pomdp/VisitAll: masked recurrent PPO, unmasked recurrent PPO, and
sb3-contrib's MaskablePPO with an MLP (masks, no memory), over seeds, one process.

    python benchmarks/masked_memory.py --env pomdp/VisitAll-L16-v0 --steps 100000 --seeds 1 2 3

Prints one line per run (final mean return over ``--eval-episodes`` deterministic episodes, with
masks where the contender uses them) and the mean per contender, next to the env's exact optimal,
random and best memoryless returns.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import RecurrentPPO, envs
from recurrent_rl.ppo import MaskableRecurrentPPO

CONTENDERS = ("masked-gru", "unmasked-gru", "maskable-mlp")


def evaluate(model, env_id: str, episodes: int, masked: bool, recurrent: bool, seed: int) -> float:
    env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
    returns, total, state = [], 0.0, None
    obs, start = env.reset(), np.ones(1)
    while len(returns) < episodes:
        kwargs = {"action_masks": np.stack(env.env_method("action_masks"))} if masked else {}
        if recurrent:
            action, state = model.predict(obs, state, start, deterministic=True, **kwargs)
        else:
            action, _ = model.predict(obs, deterministic=True, **kwargs)
        obs, reward, done, _ = env.step(action)
        total += float(reward[0])
        start = done
        if done[0]:
            returns.append(total)
            total = 0.0
    return float(np.mean(returns))


def run(contender: str, env_id: str, steps: int, seed: int, eval_episodes: int) -> float:
    env = make_vec_env(env_id, n_envs=8, seed=seed)
    common = dict(n_steps=128, batch_size=256, n_epochs=4, ent_coef=0.01, seed=seed, verbose=0)
    if contender == "maskable-mlp":
        from sb3_contrib import MaskablePPO

        model = MaskablePPO("MlpPolicy", env, **common)
    else:
        algo = MaskableRecurrentPPO if contender == "masked-gru" else RecurrentPPO
        model = algo("MlpGruPolicy", env, sequence_length=32, **common)
    model.learn(steps)
    return evaluate(model, env_id, eval_episodes, contender != "unmasked-gru", contender != "maskable-mlp", seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="pomdp/VisitAll-L16-v0")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    args = parser.parse_args()
    th.set_num_threads(1)
    ref = envs.reference_returns(args.env)
    print(f"{args.env}: optimal {ref['optimal']:g}, random {ref['random']:.4f}, memoryless {ref['memoryless']:.4f}")
    for contender in args.contenders:
        scores = []
        for seed in args.seeds:
            start = time.perf_counter()
            score = run(contender, args.env, args.steps, seed, args.eval_episodes)
            scores.append(score)
            print(f"{contender:13s} seed {seed}: {score:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
        print(f"{contender:13s} mean {np.mean(scores):.3f} over seeds {args.seeds}", flush=True)


if __name__ == "__main__":
    main()
