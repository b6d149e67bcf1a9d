"""Step a recurrent agent through a single Gymnasium env by hand, carrying its memory.

A recurrent policy's action depends on everything it has seen in the episode, which lives in
its memory state. ``model.predict`` takes the state returned by the previous call and gives the
next one back; ``episode_start=True`` resets it to a fresh memory before the step (at the first
step of every episode). Forgetting either gives a policy that is silently worse.

    python examples/step_by_hand.py                                  # trains 30k steps first
    python examples/step_by_hand.py --model runs/examples/train_and_evaluate/model.zip

With ``--model``, the ``vecnormalize.pkl`` next to the model (written by
``train_and_evaluate.py``) is used to normalise observations, as during training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl import RecurrentPPO  # also registers the pomdp/ environments

ENV_ID = "pomdp/CartPoleNoVel-v1"


def train(timesteps: int, seed: int) -> tuple[RecurrentPPO, VecNormalize]:
    """A GRU agent with the default preset's settings (see train_and_evaluate.py)."""
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=8, seed=seed), gamma=0.98)
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=lambda progress: 1e-3 * progress,
        clip_range=lambda progress: 0.2 * progress,
        policy_kwargs=dict(hidden_size=64, activation_fn=th.nn.ReLU, ortho_init=False, net_arch=dict(pi=[64], vf=[64])),
        seed=seed,
    )
    model.learn(timesteps)
    print(f"trained {model.num_timesteps} steps")
    return model, env


def load(path: Path) -> tuple[RecurrentPPO, VecNormalize | None]:
    """A saved model and, when it lies next to it, its VecNormalize statistics."""
    model = RecurrentPPO.load(path, device="cpu")
    stats = path.with_name("vecnormalize.pkl")
    normalizer = VecNormalize.load(str(stats), make_vec_env(ENV_ID, n_envs=1)) if stats.is_file() else None
    print(f"loaded {path}" + (f" and {stats}" if normalizer is not None else " (no VecNormalize statistics)"))
    return model, normalizer


def play(model: RecurrentPPO, normalizer: VecNormalize | None, episodes: int, seed: int) -> list[float]:
    """Play ``episodes`` episodes on one env, one ``predict`` call per step; returns their returns."""
    env = gym.make(ENV_ID)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state = None  # None: a fresh memory (zeros); afterwards, what predict() returned
        episode_start = np.array([True])  # one flag per env; True resets the memory before this step
        total, done = 0.0, False
        while not done:
            if normalizer is not None:
                obs = normalizer.normalize_obs(obs)  # the statistics of training, kept fixed
            # obs is one env's observation, (4,): predict treats it as a batch of one env, and the
            # state it returns is a tuple of (num_layers, n_envs, hidden_size) arrays: (h,) for a GRU
            action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            episode_start = np.array([False])  # same episode: keep the memory
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        print(f"episode {episode}: return {total:.0f}")
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", type=Path, help="a saved RecurrentPPO model.zip (default: train one first)")
    parser.add_argument("--timesteps", type=int, default=30_000, help="steps to train without --model (%(default)s)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes to play (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.model is not None:
        model, normalizer = load(args.model)
    else:
        model, normalizer = train(args.timesteps, args.seed)
    returns = play(model, normalizer, args.episodes, args.seed)
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):.1f} (maximum 500)")


if __name__ == "__main__":
    main()
