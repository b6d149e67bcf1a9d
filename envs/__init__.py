"""Partially observable Gymnasium environments, registered under the ``pomdp/`` namespace.

``import envs`` (or ``import recurrent_rl``) registers them; then ``gym.make("pomdp/...")``.
"""

from __future__ import annotations

import gymnasium as gym

from envs.wrappers import MaskObservation

NAMESPACE = "pomdp"

# Same hidden dimensions as rl-baselines3-zoo's NoVel envs (rl_zoo3/wrappers.py, MaskVelocityWrapper).
VELOCITY_INDICES = {"CartPole-v1": (1, 3)}


def make_masked(env_id: str, indices: tuple[int, ...], **kwargs) -> gym.Env:
    """``gym.make(env_id)`` with the given observation dimensions zeroed."""
    return MaskObservation(gym.make(env_id, **kwargs), indices)


def _register_all() -> None:
    if f"{NAMESPACE}/CartPoleNoVel-v1" in gym.registry:
        return
    gym.register(
        id=f"{NAMESPACE}/CartPoleNoVel-v1",
        entry_point="envs:make_masked",
        kwargs={"env_id": "CartPole-v1", "indices": VELOCITY_INDICES["CartPole-v1"]},
    )


_register_all()

__all__ = ["MaskObservation", "NAMESPACE", "make_masked"]
