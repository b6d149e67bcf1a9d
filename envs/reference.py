"""Reference returns for the memory tasks: optimal, uniform-random and best memoryless policy.

All values are *exact* expected undiscounted episode returns, derived from each task's
definition (closed forms, or an exact dynamic program / binomial sum), not estimated. The tests
check them against Monte Carlo runs of scripted policies.

"Memoryless" means a policy whose action distribution depends only on the current observation.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from recurrent_rl.envs.tasks import CountRecall, RepeatFirst, RepeatPrevious, TMaze
from recurrent_rl.envs.tasks.visit import VisitAll

Policy = Callable[[np.ndarray], int]


def tmaze_random_return(corridor_length: int, max_steps: int, bump_penalty: float) -> float:
    """Exact expected return of the uniform policy in :class:`TMaze`, by forward recursion.

    The uniform policy ignores the cue, and a turn at the junction is right or wrong with
    probability 1/3 each, so only the position distribution over time matters.
    """
    length = corridor_length
    alive = np.zeros(length + 1)  # (L + 1,) probability of being at each cell, episode running
    alive[0] = 1.0
    expected = 0.0
    for _ in range(max_steps):
        corridor, junction = alive[:length].sum(), alive[length]
        # turns in the corridor, forward at the junction
        expected -= bump_penalty * (2 / 3 * corridor + 1 / 3 * junction)
        expected += 1 / 3 * junction  # turning into the cued arm
        moved = np.zeros_like(alive)
        moved[1:] += alive[:-1] / 3  # forward (the junction's own forward is a bump, below)
        moved[:length] += alive[:length] * 2 / 3
        moved[length] += alive[length] / 3  # two thirds of the junction mass terminated
        alive = moved
    return float(expected)


def count_recall_memoryless(num_symbols: int, episode_length: int, max_count: int) -> tuple[float, int, int]:
    """Best memoryless return in :class:`CountRecall` and its answers ``(return, if_match, if_no_match)``.

    Without memory the agent sees only whether the current symbol matches the query (probability
    ``1/n``); the earlier count is ``X_t ~ Binomial(t, 1/n)``, independent of that. A fixed answer
    ``a`` for an observation class earns ``sum_t P(min(X_t + match, C) = a)``, so the best
    memoryless policy picks, per class, the ``a`` with the largest sum (stochastic mixtures of
    actions are never better than the best single action here, as the return is linear in them).
    """
    p = 1.0 / num_symbols
    score_match = np.zeros(max_count + 1)  # (C + 1,) expected correct answers per fixed answer
    score_other = np.zeros(max_count + 1)
    pmf = np.array([1.0])  # Binomial(0, p)
    for _ in range(episode_length):
        counts = np.arange(len(pmf))
        np.add.at(score_other, np.minimum(counts, max_count), pmf)
        np.add.at(score_match, np.minimum(counts + 1, max_count), pmf)
        pmf = np.convolve(pmf, [1 - p, p])  # Binomial(t + 1, p)
    best = p * score_match.max() + (1 - p) * score_other.max()
    return float(best), int(score_match.argmax()), int(score_other.argmax())


def visit_all_return(length: int, max_steps: int, p_right: float) -> float:
    """Exact expected return in :class:`~recurrent_rl.envs.tasks.visit.VisitAll` of the memoryless
    policy that moves right with probability ``p_right`` in every inner cell (the ends allow one
    move only), by forward recursion over (cell, visited interval) distributions."""
    expected = 0.0
    alive: dict[tuple[int, int, int], float] = {}  # (cell, first visited, last visited) -> probability
    for start in range(length):
        alive[(start, start, start)] = 1.0 / length
    for _ in range(max_steps):
        nxt: dict[tuple[int, int, int], float] = {}
        for (cell, low, high), p in alive.items():
            right = 1.0 if cell == 0 else 0.0 if cell == length - 1 else p_right
            for to, q in ((cell + 1, right), (cell - 1, 1.0 - right)):
                if q == 0.0:
                    continue
                new_low, new_high = min(low, to), max(high, to)
                expected += p * q * ((new_low, new_high) != (low, high))
                if (new_low, new_high) != (0, length - 1):
                    key = (to, new_low, new_high)
                    nxt[key] = nxt.get(key, 0.0) + p * q
        alive = nxt
    return float(expected)


@cache
def visit_all_reference(length: int, max_steps: int) -> dict[str, Any]:
    """Exact returns of :class:`~recurrent_rl.envs.tasks.visit.VisitAll`.

    - optimal: ``length - 1`` (with memory: to one end, then back to the other end);
    - random: the policy uniform over the allowed moves (the action mask's True entries):
      :func:`visit_all_return` with ``p_right = 1/2``;
    - memoryless: every inner cell looks the same, so a memoryless policy is one probability
      ``p_right``; its best return, the maximum of the exact :func:`visit_all_return` over
      ``p_right`` (a grid of 41 values, then golden-section search around the best, to 1e-6).
    """
    grid = np.linspace(0.0, 1.0, 41)
    values = [visit_all_return(length, max_steps, float(p)) for p in grid]
    i = int(np.argmax(values))
    lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    ratio = (np.sqrt(5) - 1) / 2
    while hi - lo > 1e-6:
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if visit_all_return(length, max_steps, a) >= visit_all_return(length, max_steps, b):
            hi = b
        else:
            lo = a
    best = max(max(values), visit_all_return(length, max_steps, (lo + hi) / 2))
    return {
        "optimal": float(length - 1),
        "random": visit_all_return(length, max_steps, 0.5),
        "memoryless": best,
        "memoryless_p_right": float((lo + hi) / 2 if best > max(values) else grid[i]),
        "method": "exact",
    }


def task_reference(env: gym.Env) -> dict[str, Any]:
    """Reference returns for a memory-task instance (wrappers are looked through)."""
    task = env.unwrapped
    if isinstance(task, TMaze):
        random = tmaze_random_return(task.corridor_length, task.max_steps, task.bump_penalty)
        return {"optimal": 1.0, "random": random, "memoryless": 0.5, "method": "exact"}
    if isinstance(task, RepeatPrevious):
        scored = task.episode_length - task.delay
        chance = scored / task.num_symbols
        return {"optimal": float(scored), "random": chance, "memoryless": chance, "method": "exact"}
    if isinstance(task, RepeatFirst):
        length, n = task.episode_length, task.num_symbols
        return {"optimal": float(length), "random": length / n, "memoryless": 1 + (length - 1) / n, "method": "exact"}
    if isinstance(task, VisitAll):
        return visit_all_reference(task.length, task.max_steps)
    if isinstance(task, CountRecall):
        best, _, _ = count_recall_memoryless(task.num_symbols, task.episode_length, task.max_count)
        length = task.episode_length
        return {
            "optimal": float(length),
            "random": length / (task.max_count + 1),
            "memoryless": best,
            "method": "exact",
        }
    raise ValueError(
        f"no reference returns for {type(task).__name__}: only the memory tasks "
        "(TMaze, RepeatPrevious, RepeatFirst, CountRecall) have them"
    )


@cache
def _cached(env_id: str, overrides: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    spec = gym.spec(env_id)
    entry_point = spec.entry_point
    if entry_point is None:
        raise ValueError(f"{env_id!r} is registered without an entry point")
    creator = gym.envs.registration.load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    task = creator(**{**spec.kwargs, **dict(overrides)})
    if not isinstance(task, (TMaze, RepeatPrevious, RepeatFirst, CountRecall, VisitAll)):
        raise ValueError(
            f"env_id must be a pomdp/ memory task (TMaze, RepeatPrevious, RepeatFirst, CountRecall), got {env_id!r}"
        )
    return task_reference(task)


def reference_returns(env_id: str, **overrides: Any) -> dict[str, Any]:
    """Expected episode return of the optimal, uniform-random and best memoryless policies.

    :param env_id: a registered memory task, e.g. ``"pomdp/TMaze-v0"``
    :param overrides: the same keyword arguments you pass to ``gym.make`` to change parameters
    :return: ``{"optimal": float, "random": float, "memoryless": float, "method": "exact"}``
    """
    return dict(_cached(env_id, tuple(sorted(overrides.items()))))


def memoryless_policy(env: gym.Env) -> Policy:
    """A deterministic memoryless policy that achieves the ``"memoryless"`` reference return."""
    task = env.unwrapped
    if isinstance(task, TMaze):
        # forward until the junction, then always the left arm: right for half the cues
        return lambda obs: TMaze.LEFT if obs[TMaze.JUNCTION] > 0.5 else TMaze.FORWARD
    if isinstance(task, RepeatPrevious):
        return lambda obs: 0  # nothing observable predicts the target
    if isinstance(task, RepeatFirst):
        n = task.num_symbols
        return lambda obs: int(np.argmax(obs[:n]))  # exact on the flagged first step, chance later
    if isinstance(task, CountRecall):
        n = task.num_symbols
        _, if_match, if_other = count_recall_memoryless(n, task.episode_length, task.max_count)
        return lambda obs: if_match if np.argmax(obs[:n]) == np.argmax(obs[n:]) else if_other
    raise ValueError(f"no memoryless baseline for {type(task).__name__}: only the memory tasks have one")
