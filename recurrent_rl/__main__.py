"""``python -m recurrent_rl`` / ``recurrent-rl``: the command line (see :mod:`recurrent_rl.cli.main`).

With no arguments it trains the default preset (a GRU RecurrentPPO on ``pomdp/CartPoleNoVel-v1``
with rl-baselines3-zoo's tuned settings) into ``runs/`` and prints its evaluation.
"""

from __future__ import annotations

import sys
from pathlib import Path

from recurrent_rl.cli.main import main


def train_default(memory: str = "gru", timesteps: int = 100_000, seed: int = 0, runs_dir: str = "runs") -> Path:
    """Train the default preset (with another memory, length or seed) and return its run folder."""
    from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
    from recurrent_rl.runs.training import train

    config = load_preset(DEFAULT_PRESET, [f"policy_kwargs.memory={memory}", f"n_timesteps={timesteps}", f"seed={seed}"])
    result = train(config, runs_dir)
    if result.report is not None:
        print(result.report.table())
    return result.run_dir


__all__ = ["main", "train_default"]

if __name__ == "__main__":
    sys.exit(main())
