"""Aggregates over seeds: IQM and stratified-bootstrap confidence intervals.

The definitions of Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (https://arxiv.org/abs/2108.13264), as its ``rliable`` package computes them:

- the interquartile mean (IQM) is the mean of the middle 50% of all runs' scores, with a quarter
  trimmed from each end (``scipy.stats.trim_mean(scores, 0.25)``, rliable's ``aggregate_iqm``);
- a stratified bootstrap resamples the runs of each task with replacement, separately per task
  (so every task keeps its number of runs), and the 95% interval is the 2.5 and 97.5 percentiles
  of the statistic over the resamples (rliable's ``get_interval_estimates``, percentile method).

NumPy only, so the report needs no extra package and is reproducible from its seed.
tests/test_seeds.py checks the IQM by hand and the interval against one derived by hand (the
bootstrap distribution of a mean of zeros and ones is binomial); rliable itself does not import
beside pandas 3 (its ``arch`` dependency fails), so it is not part of the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], float]


def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean of all scores (any shape, flattened): a quarter trimmed from each end.

    As ``scipy.stats.trim_mean(x, 0.25)``: ``int(0.25 * n)`` lowest and highest values are dropped.
    """
    values = np.sort(np.asarray(scores, dtype=float).ravel())
    n = values.size
    if n == 0:
        raise ValueError("iqm of no scores")
    cut = int(0.25 * n)
    return float(values[cut : n - cut].mean())


def mean(scores: np.ndarray | Sequence[float]) -> float:
    return float(np.mean(np.asarray(scores, dtype=float)))


def median(scores: np.ndarray | Sequence[float]) -> float:
    return float(np.median(np.asarray(scores, dtype=float)))


STATISTICS: dict[str, Statistic] = {"mean": mean, "median": median, "iqm": iqm}


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.value:.1f} [{self.low:.1f}, {self.high:.1f}]"


def stratified_bootstrap(
    scores: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
    statistic: Statistic,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``statistic`` of ``scores`` (runs x tasks; a 1-D array is one task) with a percentile interval.

    Each of ``reps`` resamples draws, for every task (column) separately, as many runs as it has,
    with replacement; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of the statistic over the resamples.
    """
    matrix = np.asarray(scores, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[:, None]  # (runs, tasks)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"scores must be (runs, tasks) with at least one run, got shape {matrix.shape}")
    runs, tasks = matrix.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, runs, size=(reps, runs, tasks))  # (reps, runs, tasks): a run per draw and task
    resampled = np.take_along_axis(matrix[None].repeat(reps, axis=0), rows, axis=1)
    values = np.array([statistic(sample) for sample in resampled])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return Estimate(statistic(matrix), float(low), float(high))


def aggregate(scores: Sequence[float], reps: int = 2000, seed: int = 0) -> dict[str, Estimate]:
    """Mean, median and IQM of per-seed scores, each with a stratified-bootstrap 95% interval."""
    return {name: stratified_bootstrap(scores, fn, reps=reps, seed=seed) for name, fn in STATISTICS.items()}
