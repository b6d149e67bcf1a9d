"""VecNormalize statistics across processes: runners add their batches, the learner merges them.

The learner's ``VecNormalize`` statistics are the truth. Each iteration a runner starts from the
published statistics and normalises with them as a local ``VecNormalize`` would, updating them
step by step; :class:`TeeRunningMeanStd` also accumulates what it is updated with into a batch
statistic that starts empty. The learner merges each runner's batch into its own statistics with
Chan et al.'s parallel update (SB3's ``RunningMeanStd.update_from_moments``), so the merged
statistics are those of all the data, as one process would compute them (up to float rounding:
the order of the sums differs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd

# obs_rms of a VecNormalize: one RunningMeanStd, or one per key of a Dict observation space
Moments = RunningMeanStd | dict[str, RunningMeanStd]


class TeeRunningMeanStd(RunningMeanStd):
    """A copy of ``source`` that, on every update, also updates :attr:`batch` (empty at the start)."""

    def __init__(self, source: RunningMeanStd):
        super().__init__(shape=np.shape(source.mean))
        self.mean, self.var, self.count = (
            np.array(source.mean, np.float64),
            np.array(source.var, np.float64),
            source.count,
        )
        self.batch = RunningMeanStd(epsilon=0.0, shape=np.shape(source.mean))

    def update(self, arr: np.ndarray) -> None:
        super().update(arr)
        self.batch.update(arr)


def tee(moments: Moments) -> Any:
    """A :class:`TeeRunningMeanStd` of ``moments`` (or one per key)."""
    if isinstance(moments, dict):
        return {key: TeeRunningMeanStd(value) for key, value in moments.items()}
    return TeeRunningMeanStd(moments)


def batch_of(moments: Any) -> Any:
    """The batch statistics a :func:`tee` gathered (a copy; None where nothing was added)."""
    if isinstance(moments, dict):
        return {key: batch_of(value) for key, value in moments.items()}
    return moments.batch.copy() if moments.batch.count > 0 else None


def merge(into: Moments, batch: Any) -> None:
    """Add a batch's moments to ``into`` in place (Chan et al.'s parallel update)."""
    if batch is None:
        return
    if isinstance(into, dict):
        for key, value in into.items():
            merge(value, batch.get(key))
        return
    into.update_from_moments(batch.mean, batch.var, batch.count)


def copy_moments(moments: Moments) -> Moments:
    """A detached copy (what the learner publishes)."""
    if isinstance(moments, dict):
        return {key: value.copy() for key, value in moments.items()}
    return moments.copy()
