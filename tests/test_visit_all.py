"""VisitAll, the memory task with action masks: its masks, its exact reference returns, its docs row."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

from recurrent_rl import envs
from recurrent_rl.envs.reference import visit_all_reference, visit_all_return
from recurrent_rl.envs.tasks import VisitAll

EPISODES = 2000


def test_registered_and_checked():
    assert envs.registry.action_mask_task_ids() == [
        "pomdp/VisitAll-v0",
        "pomdp/VisitAll-L16-v0",
    ]
    check_env(VisitAll())
    env = gym.make("pomdp/VisitAll-L16-v0", render_mode="ansi")
    env.reset(seed=0)
    assert len(env.render()) == 16


def test_the_mask_forbids_walls_and_allows_revisits():
    env = VisitAll(length=4)
    env.reset(seed=0)
    env._pos = 0
    assert env.action_masks().tolist() == [False, True]
    env._pos = 3
    assert env.action_masks().tolist() == [True, False]
    env._pos = 1
    env._visited[:] = [1, 1, 1, 0]
    assert env.action_masks().tolist() == [True, True]  # cell 0 was visited: still allowed


def test_memory_visits_every_cell_from_every_start():
    # with memory: right to the wall, then left to the other wall
    env = VisitAll(length=6)
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        going, total, done = 1, 0.0, False
        while not done:
            if obs[1] > 0.5:  # the right wall: turn for good
                going = 0
            obs, reward, terminated, truncated, info = env.step(going)
            total, done = total + reward, terminated or truncated
        assert terminated and total == 5 and info["success"]


def monte_carlo(env: VisitAll, p_right: float, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    returns = []
    for episode in range(EPISODES):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            mask = env.action_masks()
            action = int(rng.random() < p_right) if mask.all() else int(np.argmax(mask))
            _, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns) / np.sqrt(EPISODES))


@pytest.mark.parametrize("length", [5, 8])
def test_reference_returns_match_monte_carlo(length):
    env = VisitAll(length=length)
    ref = visit_all_reference(length, env.max_steps)
    assert ref["optimal"] == length - 1
    mean, se = monte_carlo(env, 0.5)
    assert abs(mean - ref["random"]) <= 4 * se
    mean, se = monte_carlo(env, ref["memoryless_p_right"], seed=1)
    assert abs(mean - ref["memoryless"]) <= 4 * se
    # the best memoryless p is no worse than nearby ones, and memory is needed to be optimal
    for p in (0.0, 0.25, 0.5, 0.75, 1.0):
        assert visit_all_return(length, env.max_steps, p) <= ref["memoryless"] + 1e-12
    assert ref["memoryless"] < ref["optimal"] - 0.5


def test_docs_table_lists_the_masked_tasks():
    page = Path(__file__).resolve().parents[1] / "docs" / "environments.md"
    lines = page.read_text(encoding="utf-8").splitlines()
    for env_id in envs.registry.action_mask_task_ids():
        ref = envs.reference_returns(env_id)
        row = f"| {ref['optimal']:g} | {ref['random']:.4f} | {ref['memoryless']:.4f} |"
        line = next((line for line in lines if line.startswith(f"| `{env_id}` |")), None)
        assert line is not None and line.endswith(row), (
            f"docs/environments.md: expected a row for {env_id} ending {row}"
        )


def test_bad_parameters():
    with pytest.raises(ValueError, match="length must be an integer >= 3"):
        VisitAll(length=2)
    with pytest.raises(ValueError, match="max_steps must be an integer >= 13"):
        VisitAll(length=8, max_steps=5)


def test_renders():
    env = VisitAll(length=5, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (8, 40, 3)
