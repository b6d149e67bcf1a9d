"""Partially observable Gymnasium environments, registered under the ``pomdp/`` namespace.

With the package installed, ``import gymnasium`` registers them (a startup hook that the wheel
ships, ``_recurrent_rl_gym_hook``), so ``gym.make("pomdp/...")`` needs no other import; importing
``recurrent_rl`` or ``recurrent_rl.envs`` registers them as well.
See docs/environments.md for the list of ids, what each hides and its reference returns.

May import: nothing of the package but itself (Gymnasium and NumPy): it installs and runs without torch.
"""

from __future__ import annotations

from recurrent_rl.envs.latency import StepCost
from recurrent_rl.envs.reference import memoryless_policy, reference_returns
from recurrent_rl.envs.registry import (
    MEMORY_TASKS,
    NAMESPACE,
    VELOCITY_INDICES,
    action_mask_task_ids,
    make_masked,
    make_masked_raw,
    masked_ids,
    memory_task_ids,
    register_all,
)
from recurrent_rl.envs.tasks import CountRecall, RepeatFirst, RepeatPrevious, TMaze, VisitAll
from recurrent_rl.envs.wrappers import (
    FlickerObservation,
    GaussianObservationNoise,
    MaskObservation,
    PreviousActionReward,
)

register_all()

__all__ = [
    "MEMORY_TASKS",
    "NAMESPACE",
    "VELOCITY_INDICES",
    "CountRecall",
    "FlickerObservation",
    "GaussianObservationNoise",
    "MaskObservation",
    "PreviousActionReward",
    "RepeatFirst",
    "RepeatPrevious",
    "StepCost",
    "TMaze",
    "VisitAll",
    "action_mask_task_ids",
    "make_masked",
    "make_masked_raw",
    "masked_ids",
    "memory_task_ids",
    "memoryless_policy",
    "reference_returns",
    "register_all",
]
