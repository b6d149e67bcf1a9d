"""Pretraining presets: encoders that estimate the velocities a masked-velocity task hides.

Each records trajectories with a random policy, then trains a GRU (64 units, the size of the
default policies' memory) to output the env's whole state at every step: the masked velocities
and the observed positions. The policy reads only the memory's output, so an encoder trained on
the velocities alone is free to drop the positions, which the policy needs (in a pilot, a frozen
velocities-only Pendulum encoder never reached the benchmark's threshold; whole-state ones did).

Each runs in about ten seconds on one CPU core. The data is small on purpose: it counts against
the agent's environment steps in ``benchmarks/pretraining.py``. Override anything with ``--set``,
e.g. ``--set model.memory=lstm``.
"""

from __future__ import annotations

import copy
from typing import Any

_TRAIN = dict(epochs=100, batch_size=32, learning_rate=3e-3, weight_decay=1e-4, max_grad_norm=1.0,
              val_fraction=0.2, patience=15, seed=0)  # fmt: skip

PRESETS: dict[str, dict[str, Any]] = {
    # CartPole state: x, x_dot, theta, theta_dot; the velocities (1, 3) are masked in the observation
    "cartpole-novel": {
        "name": "cartpole-novel",
        "data": dict(env_id="pomdp/CartPoleNoVel-v1", n_steps=3_000, policy="random", target="state"),
        "model": dict(memory="gru", hidden_size=64, num_layers=1),
        "train": dict(_TRAIN),
    },
    # Pendulum state: cos(theta), sin(theta), theta_dot; the angular velocity (2) is masked
    "pendulum-novel": {
        "name": "pendulum-novel",
        "data": dict(env_id="pomdp/PendulumNoVel-v1", n_steps=5_000, policy="random", target="state"),
        "model": dict(memory="gru", hidden_size=64, num_layers=1),
        "train": dict(_TRAIN, batch_size=4),  # 25 episodes of 200 steps
    },
}


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name`` (a config dict); unknown names list the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown pretraining preset {name!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
