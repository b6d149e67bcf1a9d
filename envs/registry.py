"""The ``pomdp/`` Gymnasium ids: masked-velocity control envs and the memory tasks."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
from gymnasium.envs import registration

from recurrent_rl.envs.wrappers import MaskObservation

NAMESPACE = "pomdp"

# Same hidden dimensions as rl-baselines3-zoo's NoVel envs (rl_zoo3/wrappers.py, MaskVelocityWrapper).
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (1, 3),  # cart velocity, pole angular velocity
    "MountainCar-v0": (1,),  # velocity
    "MountainCarContinuous-v0": (1,),  # velocity
    "Pendulum-v1": (2,),  # angular velocity
    "Acrobot-v1": (4, 5),  # both joint angular velocities
}

# pomdp/ id -> (entry point, kwargs, difficulty). The ``-v0`` ids without a suffix are the
# configurable base ids (class defaults, the easy setting); pass kwargs to gym.make to change them.
# One id per env: the ids of DEPRECATED_IDS named the same envs as base ids and only warn now.
MEMORY_TASKS: dict[str, tuple[str, dict[str, Any], str]] = {
    "TMaze-v0": ("recurrent_rl.envs.tasks:TMaze", {}, "easy"),
    "TMaze-L50-v0": ("recurrent_rl.envs.tasks:TMaze", {"corridor_length": 50}, "medium"),
    "TMaze-L100-v0": ("recurrent_rl.envs.tasks:TMaze", {"corridor_length": 100}, "hard"),
    # long horizons, for the scan and attention memories
    "TMaze-L200-v0": ("recurrent_rl.envs.tasks:TMaze", {"corridor_length": 200}, "very hard"),
    "TMaze-L500-v0": ("recurrent_rl.envs.tasks:TMaze", {"corridor_length": 500}, "very hard"),
    "RepeatPrevious-v0": ("recurrent_rl.envs.tasks:RepeatPrevious", {}, "easy"),
    "RepeatPrevious-k4-v0": (
        "recurrent_rl.envs.tasks:RepeatPrevious",
        {"num_symbols": 4, "delay": 4, "episode_length": 64},
        "medium",
    ),
    "RepeatPrevious-k16-v0": (
        "recurrent_rl.envs.tasks:RepeatPrevious",
        {"num_symbols": 8, "delay": 16, "episode_length": 128},
        "hard",
    ),
    "RepeatFirst-v0": ("recurrent_rl.envs.tasks:RepeatFirst", {}, "easy"),
    "RepeatFirst-Medium-v0": (
        "recurrent_rl.envs.tasks:RepeatFirst",
        {"num_symbols": 8, "episode_length": 64},
        "medium",
    ),
    "RepeatFirst-Hard-v0": ("recurrent_rl.envs.tasks:RepeatFirst", {"num_symbols": 16, "episode_length": 256}, "hard"),
    "RepeatFirst-512-v0": (
        "recurrent_rl.envs.tasks:RepeatFirst",
        {"num_symbols": 16, "episode_length": 512},
        "very hard",
    ),
    "CountRecall-v0": ("recurrent_rl.envs.tasks:CountRecall", {}, "easy"),
    "CountRecall-Medium-v0": (
        "recurrent_rl.envs.tasks:CountRecall",
        {"num_symbols": 4, "episode_length": 32, "max_count": 16},
        "medium",
    ),
    "CountRecall-Hard-v0": (
        "recurrent_rl.envs.tasks:CountRecall",
        {"num_symbols": 8, "episode_length": 64, "max_count": 16},
        "hard",
    ),
}

# memory tasks with action masks (``action_masks()``, for MaskableRecurrentPPO): id -> (entry point,
# kwargs, difficulty), registered like MEMORY_TASKS
ACTION_MASK_TASKS: dict[str, tuple[str, dict[str, Any], str]] = {
    "VisitAll-v0": ("recurrent_rl.envs.tasks:VisitAll", {}, "easy"),
    "VisitAll-L16-v0": ("recurrent_rl.envs.tasks:VisitAll", {"length": 16}, "medium"),
}


# deprecated pomdp/ id -> the id of the same env (class defaults and the old id's kwargs are equal);
# registered until 2027-06-30, each warns once per process (DeprecatedEnvId) and makes that env
DEPRECATED_IDS: dict[str, str] = {
    "TMaze-L10-v0": "TMaze-v0",
    "RepeatPrevious-k2-v0": "RepeatPrevious-v0",
    "RepeatFirst-Easy-v0": "RepeatFirst-v0",
    "CountRecall-Easy-v0": "CountRecall-v0",
    "VisitAll-L8-v0": "VisitAll-v0",
}
_warned: set[str] = set()


class DeprecatedEnvId(FutureWarning):
    """A ``pomdp/`` id that names the same env as another, kept for old scripts and run folders.

    A ``FutureWarning``: shown to the people who run a script, not only to its developers."""


def make_deprecated(deprecated_id: str, **kwargs: Any) -> gym.Env:
    """The env of deprecated id ``deprecated_id`` (:data:`DEPRECATED_IDS`), with one warning per process."""
    canonical = DEPRECATED_IDS[deprecated_id]
    if deprecated_id not in _warned:
        _warned.add(deprecated_id)
        warnings.warn(
            f"{NAMESPACE}/{deprecated_id} is deprecated: it is {NAMESPACE}/{canonical}, the same env; use "
            f"{NAMESPACE}/{canonical} (the old id goes after 2027-06-30)",
            DeprecatedEnvId,
            stacklevel=3,
        )
    entry_point, defaults, _ = {**MEMORY_TASKS, **ACTION_MASK_TASKS}[canonical]
    env = registration.load_env_creator(entry_point)(**{**defaults, **kwargs})
    assert isinstance(env, gym.Env)  # the memory tasks' classes
    return env


def suite_ids() -> list[str]:
    """Every ``pomdp/`` id of the suite, the deprecated ones left out (full ids, sorted)."""
    return sorted([*masked_ids(), *memory_task_ids(), *action_mask_task_ids()])


def make_masked(env_id: str, indices: tuple[int, ...], **kwargs: Any) -> gym.Env:
    """``gym.make(env_id)`` with the given observation dimensions zeroed."""
    return MaskObservation(gym.make(env_id, **kwargs), indices)


def make_masked_raw(env_id: str, indices: tuple[int, ...], **kwargs: Any) -> gym.Env:
    """Like :func:`make_masked`, but masks the bare env, without its own time limit.

    The ``pomdp/*NoVel`` registrations then carry the base env's ``max_episode_steps`` in their
    own spec, so ``gym.make(id, max_episode_steps=N)`` really changes the limit instead of being
    cut short by a second, inner ``TimeLimit``.
    """
    return MaskObservation(gym.make(env_id, **kwargs).unwrapped, indices)


def masked_id(base_id: str) -> str:
    """The ``pomdp/`` id of a base env's masked-velocity variant: ``Pendulum-v1`` -> ``pomdp/PendulumNoVel-v1``."""
    name, version = base_id.rsplit("-", 1)
    return f"{NAMESPACE}/{name}NoVel-{version}"


def masked_ids() -> list[str]:
    """All registered masked-velocity ids (full, with namespace)."""
    return [masked_id(base) for base in VELOCITY_INDICES]


def action_mask_task_ids() -> list[str]:
    """All registered memory tasks with action masks (full ids, with namespace)."""
    return [f"{NAMESPACE}/{name}" for name in ACTION_MASK_TASKS]


def memory_task_ids() -> list[str]:
    """All registered memory-task ids (full, with namespace)."""
    return [f"{NAMESPACE}/{name}" for name in MEMORY_TASKS]


def register_all() -> None:
    """Register every ``pomdp/`` id that is not registered yet (safe to call twice).

    This is the ``gymnasium.envs`` entry point too. Gymnasium before 1.0 calls it from inside its
    own ``import gymnasium`` (in ``gym.namespace("pomdp")``, which gives the same ids), when the
    top-level ``gym.register`` / ``gym.registry`` / ``gym.spec`` are not bound yet, so they are
    taken from ``gymnasium.envs.registration``, which has finished importing by then.
    """
    for base in VELOCITY_INDICES:
        env_id = masked_id(base)
        if env_id in registration.registry:
            continue
        if base == "CartPole-v1":
            # the original registration, kept exactly as the core has always used it
            registration.register(
                id=env_id,
                entry_point="recurrent_rl.envs:make_masked",
                kwargs={"env_id": base, "indices": VELOCITY_INDICES[base]},
            )
        else:
            registration.register(
                id=env_id,
                entry_point="recurrent_rl.envs.registry:make_masked_raw",
                kwargs={"env_id": base, "indices": VELOCITY_INDICES[base]},
                max_episode_steps=registration.spec(base).max_episode_steps,
            )
    for name, (entry_point, kwargs, _) in {**MEMORY_TASKS, **ACTION_MASK_TASKS}.items():
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in registration.registry:
            # the tasks end their own episodes (fixed length, or TMaze's max_steps), so no TimeLimit
            registration.register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs))
    for name in DEPRECATED_IDS:
        env_id = f"{NAMESPACE}/{name}"
        if env_id not in registration.registry:
            registration.register(
                id=env_id, entry_point="recurrent_rl.envs.registry:make_deprecated", kwargs={"deprecated_id": name}
            )
