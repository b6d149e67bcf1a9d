"""Train a GRU agent on CartPole without velocities, save it, reload it and evaluate it.

The agent sees the cart position and the pole angle only (``pomdp/CartPoleNoVel-v1``), so it
must infer both velocities from successive observations: a memoryless policy stays near 40,
a recurrent one can reach the maximum of 500. The settings are rl-baselines3-zoo's
(``recurrent-rl presets``: ``cartpole-novel-gru-zoo``); the default preset ``cartpole-novel-gru``
holds settings tuned to end near 500 on more seeds.

    python examples/train_and_evaluate.py                     # 100k steps, a few minutes on one core
    python examples/train_and_evaluate.py --timesteps 20000   # a quick look

It writes ``model.zip`` and ``vecnormalize.pkl`` under ``--out``. Observations are
normalised by running statistics (VecNormalize), which belong to the trained agent as much as
its weights: a model evaluated without them sees inputs on another scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl import RecurrentPPO  # also registers the pomdp/ environments

ENV_ID = "pomdp/CartPoleNoVel-v1"
GAMMA = 0.98


def train(timesteps: int, out: Path, seed: int) -> tuple[Path, Path]:
    """Train RecurrentPPO and write the model and the VecNormalize statistics under ``out``."""
    # 8 envs stepped in one process; rewards are scaled by the spread of returns discounted
    # like the values (same gamma), as rl-baselines3-zoo does
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=8, seed=seed), gamma=GAMMA)
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        n_steps=32,  # per env: a rollout is 8 x 32 = 256 steps
        batch_size=256,
        n_epochs=20,
        gamma=GAMMA,
        gae_lambda=0.8,
        learning_rate=lambda progress: 1e-3 * progress,  # progress goes from 1 to 0: linear decay
        clip_range=lambda progress: 0.2 * progress,
        policy_kwargs=dict(
            hidden_size=64,  # GRU units
            critic_memory="separate",  # the critic has its own GRU (the default)
            activation_fn=th.nn.ReLU,
            ortho_init=False,
            net_arch=dict(pi=[64], vf=[64]),  # heads after the memory
        ),
        seed=seed,
        verbose=0,
    )
    # on the CPU, learn() runs torch on one thread (torch_threads="auto"): small recurrent nets
    # train several times faster than with one thread per core
    model.learn(timesteps)
    out.mkdir(parents=True, exist_ok=True)
    model_path, stats_path = out / "model.zip", out / "vecnormalize.pkl"
    model.save(model_path)
    env.save(str(stats_path))  # the running mean and variance of observations and returns
    env.close()
    print(f"trained {model.num_timesteps} steps; saved {model_path} and {stats_path}")
    return model_path, stats_path


def evaluate(model_path: Path, stats_path: Path, episodes: int, seed: int) -> tuple[float, float]:
    """Reload the model and its statistics into a fresh env and play ``episodes`` whole episodes."""
    env = VecNormalize.load(str(stats_path), make_vec_env(ENV_ID, n_envs=1, seed=seed + 1000))
    env.training = False  # keep the statistics fixed while evaluating
    env.norm_reward = False  # report returns in the env's own units
    model = RecurrentPPO.load(model_path, env=env)
    # evaluate_policy passes the memory state and the episode starts to predict() itself,
    # so the GRU is carried through each episode and reset between them
    mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True)
    env.close()
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--timesteps", type=int, default=100_000, help="training steps (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/examples/train_and_evaluate"),
        help="folder for model.zip and vecnormalize.pkl (default: %(default)s)",
    )
    args = parser.parse_args()

    model_path, stats_path = train(args.timesteps, args.out, args.seed)
    mean, std = evaluate(model_path, stats_path, args.episodes, args.seed)
    print(f"mean return over {args.episodes} episodes: {mean:.1f} ± {std:.1f} (maximum 500)")


if __name__ == "__main__":
    main()
