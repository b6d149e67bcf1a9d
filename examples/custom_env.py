"""A partially observable env written by hand, a memory agent trained on it, and a wrapper.

"Remember the cue": at step 0 the agent sees a cue (left or right), then ``delay`` blank steps,
then a question; its action at the question is the answer (+1 right, -1 wrong) and ends the
episode. No single observation after step 0 tells the answer, so a memoryless policy averages
0; a recurrent one can score 1 every time.

    python examples/custom_env.py                     # 20k steps, well under a minute
    python examples/custom_env.py --delay 20 --timesteps 50000

The end shows one of the package's wrappers (``recurrent_rl.envs.wrappers``) hiding the
velocities of Gymnasium's own CartPole.
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from recurrent_rl import RecurrentPPO
from recurrent_rl.envs import MaskObservation

ENV_ID = "examples/RememberCue-v0"


class RememberCue(gym.Env):
    """Cue at step 0, ``delay`` blank steps, then a question: answer with the cue (0 left, 1 right).

    Observation ``[cue_left, cue_right, question]`` (float32, 0 or 1); the cue is hidden from step 1.
    ``info["state"]`` is the cue (what the observation hides), ``info["success"]`` is set at the end.
    """

    metadata = {"render_modes": []}

    def __init__(self, delay: int = 5) -> None:
        if delay < 1:
            raise ValueError(f"delay must be at least 1, got {delay}")
        self.delay = delay
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._cue, self._t = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0  # the cue, at the first step only
        elif self._t == self.delay:
            obs[2] = 1.0  # the question
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)  # seeds self.np_random
        self._cue, self._t = int(self.np_random.integers(2)), 0
        return self._obs(), {"state": np.array([self._cue])}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        info: dict[str, Any] = {"state": np.array([self._cue])}
        if self._t < self.delay:  # actions before the question do not count
            self._t += 1
            return self._obs(), 0.0, False, False, info
        correct = int(action) == self._cue
        info["success"] = correct
        return np.zeros(3, dtype=np.float32), 1.0 if correct else -1.0, True, False, info


# Registered under an id, the env works with gym.make and the package's tools (an entry point
# given as "module:Class", a string, also lets other processes import it).
gym.register(ENV_ID, entry_point=RememberCue)


def train(delay: int, timesteps: int, seed: int) -> RecurrentPPO:
    # make_vec_env takes the class (or any function returning an env) as well as a registered id;
    # given an id, it asks gym.make for rgb_array frames, which this env does not draw
    env = make_vec_env(RememberCue, n_envs=8, seed=seed, env_kwargs=dict(delay=delay))
    # observations are already 0/1, so no VecNormalize. Each env's rollout of 64 steps holds several
    # whole episodes; the memory is reset at every episode start inside it.
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        n_steps=64,
        batch_size=256,
        n_epochs=10,
        learning_rate=1e-3,
        gamma=0.99,
        ent_coef=0.01,
        seed=seed,
        # gate_bias opens the GRU's update gate at init, so a fresh memory holds the cue longer
        # (without it, delay 20 stayed at chance after 50k steps; with it, solved)
        policy_kwargs=dict(hidden_size=32, gate_bias=2.0, net_arch=dict(pi=[32], vf=[32])),
    )
    model.learn(timesteps)
    print(f"trained {model.num_timesteps} steps on RememberCue (delay {delay})")
    return model


def evaluate(model: RecurrentPPO, delay: int, episodes: int, seed: int) -> None:
    env = make_vec_env(RememberCue, n_envs=1, seed=seed + 1000, env_kwargs=dict(delay=delay))
    successes: list[bool] = []

    def record(local: dict[str, Any], _: dict[str, Any]) -> None:  # called by evaluate_policy after each step
        if local["done"]:
            successes.append(bool(local["info"]["success"]))

    mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, callback=record)
    print(
        f"mean return over {episodes} episodes: {mean:.2f} ± {std:.2f} (memoryless 0, perfect memory 1); "
        f"success rate {np.mean(successes):.2f}"
    )


def show_wrapper() -> None:
    """MaskObservation zeroes chosen entries of a standard env's observation (here CartPole's velocities)."""
    env = MaskObservation(gym.make("CartPole-v1"), indices=[1, 3])  # cart velocity, pole angular velocity
    obs, info = env.reset(seed=0)
    obs, *_, info = env.step(0)
    print(f"CartPole-v1 masked: observation {np.round(obs, 3)}, info['state'] {np.round(info['state'], 3)}")
    # the same inside a VecEnv, ready for RecurrentPPO
    venv = make_vec_env("CartPole-v1", n_envs=2, wrapper_class=MaskObservation, wrapper_kwargs=dict(indices=[1, 3]))
    print(f"make_vec_env with the wrapper: {venv.num_envs} envs, observations of shape {venv.observation_space.shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--delay", type=int, default=5, help="blank steps between the cue and the question")
    parser.add_argument("--timesteps", type=int, default=20_000, help="training steps (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    check_env(gym.make(ENV_ID, delay=args.delay).unwrapped)  # Gymnasium's checks of the spaces, reset and step
    model = train(args.delay, args.timesteps, args.seed)
    evaluate(model, args.delay, args.episodes, args.seed)
    show_wrapper()


if __name__ == "__main__":
    main()
