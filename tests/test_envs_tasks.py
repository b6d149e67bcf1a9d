"""Memory tasks: perfect memory is optimal; random and memoryless policies land at the documented returns.

Monte Carlo tolerance: a run of N episodes estimates the expected return with standard error
``se = std / sqrt(N)``; we accept ``|mean - reference| <= 4 se``. With a fixed seed the test is
deterministic, and for an arbitrary seed a correct env would fail it with probability about
6e-5 (normal approximation, which is accurate here: N >= 400 bounded returns). We also assert the
tolerance is under a quarter of the optimal-minus-memoryless gap, so a pass really locates the
return on the right side of that gap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from recurrent_rl import envs
from recurrent_rl.envs.reference import count_recall_memoryless, tmaze_random_return
from recurrent_rl.envs.tasks import CountRecall, RepeatFirst, RepeatPrevious, SequenceTask, TMaze

# the named variants; the bare "-v0" ids share their easy variant's parameters (checked below)
VARIANTS = [env_id for env_id in envs.memory_task_ids() if env_id.count("-") > 1]
EPISODES = 400


def _task(env_id: str) -> gym.Env:
    return gym.make(env_id).unwrapped  # the bare task: no checker wrappers, fast rollouts


# --- scripted policies with perfect memory -----------------------------------------------------
class PerfectMemory:
    """Remembers what the task needs from past observations alone (not from info)."""

    def __init__(self, task: gym.Env):
        self.task = task

    def reset(self) -> None:
        self.t = -1
        self.history: list[int] = []
        self.counts = np.zeros(getattr(self.task, "num_symbols", 1), dtype=np.int64)

    def observe(self, obs: np.ndarray) -> tuple[int, int]:
        """(action, expected info["state"]) after seeing ``obs``."""
        self.t += 1
        task = self.task
        if isinstance(task, TMaze):
            if self.t == 0:
                self.cue = int(np.argmax(obs[:2]))
            return (TMaze.LEFT + self.cue if obs[TMaze.JUNCTION] else TMaze.FORWARD), self.cue
        n = task.num_symbols
        symbol = int(np.argmax(obs[:n]))
        self.history.append(symbol)
        if isinstance(task, RepeatPrevious):
            k = task.delay
            target = self.history[self.t - k] if self.t >= k else -1
            return max(target, 0), target
        if isinstance(task, RepeatFirst):
            return self.history[0], self.history[0]
        assert isinstance(task, CountRecall)
        self.counts[symbol] += 1
        answer = int(min(self.counts[int(np.argmax(obs[n:]))], task.max_count))
        return answer, answer


@pytest.mark.parametrize("env_id", VARIANTS)
def test_perfect_memory_reaches_the_optimal_return(env_id: str) -> None:
    task = _task(env_id)
    memory = PerfectMemory(task)
    optimal = envs.reference_returns(env_id)["optimal"]
    for episode in range(20):
        obs, info = task.reset(seed=episode)
        memory.reset()
        total, done = 0.0, False
        while not done:
            action, state = memory.observe(obs)
            assert info["state"].tolist() == [state]  # the hidden variable, as documented
            obs, reward, terminated, truncated, info = task.step(action)
            total += reward
            done = terminated or truncated
        assert terminated and not truncated
        assert total == optimal
        assert info["success"] is True


# --- Monte Carlo estimates of the random and memoryless returns --------------------------------
def _mean_return(task: gym.Env, policy: Callable[[np.ndarray], int], seed: int) -> tuple[float, float]:
    returns = np.empty(EPISODES)
    task.reset(seed=seed)
    for episode in range(EPISODES):
        obs, _ = task.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = task.step(policy(obs))
            total += reward
            done = terminated or truncated
        returns[episode] = total
    return float(returns.mean()), float(returns.std(ddof=1) / np.sqrt(EPISODES))


@pytest.mark.parametrize("baseline", ["random", "memoryless"])
@pytest.mark.parametrize("env_id", VARIANTS)
def test_baselines_land_at_their_reference_returns(env_id: str, baseline: str) -> None:
    task = _task(env_id)
    ref = envs.reference_returns(env_id)
    assert ref["method"] == "exact"
    if baseline == "random":
        rng = np.random.default_rng(0)
        n = int(task.action_space.n)
        policy: Callable[[np.ndarray], int] = lambda obs: int(rng.integers(n))  # noqa: E731
    else:
        policy = envs.memoryless_policy(task)
    mean, se = _mean_return(task, policy, seed=1)
    tolerance = 4 * se
    assert tolerance < 0.25 * (ref["optimal"] - ref["memoryless"])
    assert abs(mean - ref[baseline]) <= tolerance, f"{baseline}: {mean:.4f} +- {se:.4f} vs {ref[baseline]:.4f}"


def test_memory_matters_in_every_variant() -> None:
    for env_id in VARIANTS:
        ref = envs.reference_returns(env_id)
        assert ref["random"] <= ref["memoryless"] < ref["optimal"]
        # well below: the memoryless baseline gets at most 60% of the optimal return
        assert ref["memoryless"] <= 0.6 * ref["optimal"]


def test_base_ids_share_the_easy_parameters() -> None:
    pairs = {
        "TMaze": "TMaze-L10",
        "RepeatPrevious": "RepeatPrevious-k2",
        "RepeatFirst": "RepeatFirst-Easy",
        "CountRecall": "CountRecall-Easy",
    }
    for base, easy in pairs.items():
        assert envs.reference_returns(f"pomdp/{base}-v0") == envs.reference_returns(f"pomdp/{easy}-v0")


# --- exact references: closed forms and overrides ----------------------------------------------
def test_reference_closed_forms() -> None:
    exact = {"method": "exact"}
    assert envs.reference_returns("pomdp/RepeatPrevious-k4-v0") == {
        "optimal": 60.0,
        "random": 15.0,
        "memoryless": 15.0,
        **exact,
    }
    assert envs.reference_returns("pomdp/RepeatFirst-v0") == {
        "optimal": 16.0,
        "random": 4.0,
        "memoryless": 4.75,
        **exact,
    }
    # no bump penalty and a very long limit: random reaches the junction and picks an arm 50/50
    assert tmaze_random_return(3, 10_000, 0.0) == pytest.approx(0.5)
    # corridor of 1, limit 2: forward then a turn, (1/3) * (1/3) chance of the cued arm
    assert tmaze_random_return(1, 2, 0.0) == pytest.approx(1 / 9)


def test_count_recall_memoryless_is_the_best_fixed_answer_pair() -> None:
    # brute force over every (answer if match, answer if not) by exact enumeration of a tiny case
    n, length, cap = 2, 4, 3
    best = max(
        _exact_pair_return(n, length, cap, a_match, a_other) for a_match in range(cap + 1) for a_other in range(cap + 1)
    )
    assert count_recall_memoryless(n, length, cap)[0] == pytest.approx(best)


def _exact_pair_return(n: int, length: int, cap: int, a_match: int, a_other: int) -> float:
    total = 0.0
    for code in range(n ** (2 * length)):  # every symbol and query sequence, equally likely
        digits = [(code // n**i) % n for i in range(2 * length)]
        symbols, queries = digits[:length], digits[length:]
        for t in range(length):
            answer = min(symbols[: t + 1].count(queries[t]), cap)
            guess = a_match if symbols[t] == queries[t] else a_other
            total += guess == answer
    return total / n ** (2 * length)


def test_reference_returns_accept_gym_make_overrides() -> None:
    ref = envs.reference_returns("pomdp/TMaze-v0", corridor_length=20, bump_penalty=0.0)
    assert ref["random"] == pytest.approx(tmaze_random_return(20, 42, 0.0))
    assert envs.reference_returns("pomdp/RepeatPrevious-v0", delay=5)["optimal"] == 27.0


# --- task semantics ----------------------------------------------------------------------------
def test_tmaze_corridor_does_not_reveal_the_cue() -> None:
    task = TMaze(corridor_length=5)
    traces = {}
    for seed in range(20):
        obs, info = task.reset(seed=seed)
        seen = []
        for _ in range(5):
            obs, *_ = task.step(TMaze.FORWARD)
            seen.append(obs)
        traces[int(info["state"][0])] = np.stack(seen)
    assert set(traces) == {0, 1}
    np.testing.assert_array_equal(traces[0], traces[1])
    assert traces[0][-1].tolist() == [0, 0, 0, 1]  # the junction


def test_tmaze_rewards_and_time_limit() -> None:
    task = TMaze(corridor_length=2, max_steps=5, bump_penalty=0.1)
    obs, info = task.reset(seed=0)
    wrong = TMaze.RIGHT - int(info["state"][0])  # the action into the arm that was not cued
    assert task.step(TMaze.LEFT)[1] == pytest.approx(-0.1)  # a wall in the corridor
    task.step(TMaze.FORWARD), task.step(TMaze.FORWARD)
    obs, reward, terminated, truncated, info = task.step(wrong)
    assert (reward, terminated, truncated, info["success"]) == (0.0, True, False, False)
    assert not obs.any()
    task.reset(seed=0)
    for _ in range(4):
        assert task.step(TMaze.RIGHT)[3] is False
    _, _, terminated, truncated, info = task.step(TMaze.RIGHT)
    assert (terminated, truncated, info["success"]) == (False, True, False)
    with pytest.raises(RuntimeError, match="reset"):
        task.step(TMaze.FORWARD)


@pytest.mark.parametrize("task", [RepeatPrevious(), RepeatFirst(), CountRecall()], ids=type)
def test_sequence_tasks_end_after_episode_length(task: SequenceTask) -> None:
    task.reset(seed=0)
    for step in range(task.episode_length):
        obs, _, terminated, truncated, info = task.step(0)
        assert terminated == (step == task.episode_length - 1) and not truncated
    assert not obs.any() and 0 <= info["accuracy"] <= 1 and isinstance(info["success"], bool)


def test_repeat_first_flags_only_the_first_step() -> None:
    task = RepeatFirst(num_symbols=3, episode_length=6)
    obs, _ = task.reset(seed=0)
    flags = [obs[-1]]
    for _ in range(4):
        obs, *_ = task.step(0)
        flags.append(obs[-1])
    assert flags == [1, 0, 0, 0, 0]


def test_renders() -> None:
    for env_id in [
        "pomdp/TMaze-v0",
        "pomdp/RepeatPrevious-v0",
        "pomdp/RepeatFirst-v0",
        "pomdp/CountRecall-v0",
    ]:
        env = gym.make(env_id, render_mode="ansi")
        env.reset(seed=0)
        env.step(0)
        assert "t=1/" in env.render()
    env = gym.make("pomdp/TMaze-v0", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (3 * 8, 11 * 8, 3) and image.dtype == np.uint8
    # sequence tasks draw observation / last answer / score rows; SB3's make_vec_env asks for rgb_array
    env = gym.make("pomdp/RepeatPrevious-v0", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    env.step(0)  # t = 0 < delay: unscored, drawn grey
    image = env.render()
    assert image.shape == (3 * 16, 4 * 16, 3)
    assert (image[16, 0] == 128).all() and image[16, 16:].max() == 0


# --- invalid parameters ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TMaze(corridor_length=-1), r"corridor_length must be an integer >= 1, got -1"),
        (lambda: TMaze(corridor_length=2.5), r"corridor_length must be an integer"),
        (lambda: TMaze(corridor_length=5, max_steps=5), r"max_steps must be an integer >= 6"),
        (lambda: TMaze(bump_penalty=-0.1), r"bump_penalty must be a real number in >= 0"),
        (lambda: TMaze(render_mode="human"), r"render_mode"),
        (lambda: RepeatPrevious(delay=32, episode_length=32), r"delay must be an integer \[1, 31\], got 32"),
        (lambda: RepeatPrevious(delay=0), r"delay must be an integer \[1, 31\]"),
        (lambda: RepeatPrevious(num_symbols=1), r"num_symbols must be an integer >= 2"),
        (lambda: RepeatFirst(episode_length=-4), r"episode_length must be an integer >= 2"),
        (lambda: CountRecall(max_count=0), r"max_count must be an integer \[1, 16\]"),
        (lambda: CountRecall(episode_length=8, max_count=9), r"max_count must be an integer \[1, 8\]"),
        (lambda: CountRecall(render_mode="human"), r"render_mode"),
        (lambda: gym.make("pomdp/TMaze-v0", corridor_length=0), r"corridor_length"),
    ],
)
def test_invalid_parameters_raise_value_error(make: Callable[[], gym.Env], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("task", [TMaze(), RepeatPrevious(), CountRecall()], ids=type)
def test_invalid_actions_raise_value_error(task: gym.Env) -> None:
    task.reset(seed=0)
    for bad in [int(task.action_space.n), -1, 0.5]:
        with pytest.raises(ValueError, match="action"):
            task.step(bad)
    task.step(np.int64(0))  # NumPy integers, as vectorised envs pass them, are fine


def test_docs_table_matches_the_code() -> None:
    """The reference-returns table of docs/environments.md lists every memory task with its exact values."""
    page = Path(__file__).resolve().parents[1] / "docs" / "environments.md"
    lines = page.read_text(encoding="utf-8").splitlines()
    for env_id in envs.memory_task_ids():
        ref = envs.reference_returns(env_id)
        row = f"| {ref['optimal']:g} | {ref['random']:.4f} | {ref['memoryless']:.4f} |"
        line = next((line for line in lines if line.startswith(f"| `{env_id}` |")), None)
        assert line is not None, f"docs/environments.md has no row for {env_id}"
        assert line.endswith(row), f"docs/environments.md is stale for {env_id}: expected {row}"
