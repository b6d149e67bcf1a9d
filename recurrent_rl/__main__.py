"""``python -m recurrent_rl`` / ``recurrent-rl``: train the default agent and print its evaluation.

The default agent is a GRU RecurrentPPO on CartPole without velocities (``pomdp/CartPoleNoVel-v1``)
with rl-baselines3-zoo's tuned RecurrentPPO settings for that task.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl import RecurrentPPO

ENV_ID = "pomdp/CartPoleNoVel-v1"
# rl-baselines3-zoo hyperparams/ppo_lstm.yml, CartPoleNoVel-v1
SETTINGS = dict(n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, ent_coef=0.0)


def train_default(memory: str = "gru", timesteps: int = 100_000, seed: int = 0, runs_dir: str = "runs") -> Path:
    """Train the default agent into a new run folder and return the folder."""
    th.set_num_threads(1)  # small recurrent nets run fastest on one thread
    name = f"{ENV_ID.replace('/', '-')}__{memory}__seed{seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    run = Path(runs_dir) / name
    run.mkdir(parents=True, exist_ok=False)  # never reuse a folder
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=8, seed=seed))
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        learning_rate=lambda progress: 1e-3 * progress,
        clip_range=lambda progress: 0.2 * progress,
        policy_kwargs=dict(
            memory=memory,
            hidden_size=64,
            ortho_init=False,
            activation_fn=th.nn.ReLU,
            net_arch=dict(pi=[64], vf=[64]),
        ),
        tensorboard_log=str(run),
        seed=seed,
        verbose=0,
        **SETTINGS,
    )
    model.learn(timesteps, tb_log_name="tb", progress_bar=sys.stderr.isatty())
    model.save(run / "model.zip")
    env.save(str(run / "vecnormalize.pkl"))

    eval_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=seed + 10_000), training=False, norm_reward=False)
    eval_env.obs_rms = env.obs_rms
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
    print(f"{ENV_ID} {memory} seed {seed}: {timesteps} steps, evaluation over 20 episodes: {mean:.1f} +/- {std:.1f}")
    print(f"run folder: {run}")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recurrent-rl", description=__doc__.splitlines()[0])
    parser.add_argument("--memory", choices=["gru", "lstm", "rnn"], default="gru")
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    train_default(args.memory, args.timesteps, args.seed, args.runs_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
