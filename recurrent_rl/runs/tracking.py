"""Experiment trackers beside TensorBoard: Weights & Biases (``recurrent-rl train --track wandb``).

:class:`TrackWithWandb` is an SB3 callback that, when training starts, opens a W&B run in the
run folder (``<run>/wandb/``; named after the folder, the run's ``config.yaml`` as its config)
and adds :class:`WandbOutputFormat` to the model's SB3 logger, so W&B receives every value the
logger dumps, TensorBoard's scalars and the final evaluation included, at the same steps. The
W&B run ends when the logger closes (after the final evaluation). ``WANDB_MODE=offline`` keeps
the run on disk (``wandb sync`` uploads it later), as W&B's own settings say.

Needs the ``wandb`` extra (``pip install -e '.[wandb]'``); nothing imports W&B unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from recurrent_rl.errors import UserInputError
from recurrent_rl.io import run_folder as runs

TRACKERS = ("wandb",)
WANDB_HINT = "install the wandb extra: pip install -e '.[wandb]' (from a checkout)"


def require_wandb(flag: str = "--track wandb") -> Any:
    """The ``wandb`` module, or a :class:`UserInputError` saying which extra to install."""
    try:
        import wandb
    except ImportError:
        raise UserInputError(f"{flag} needs Weights & Biases, which is not installed: {WANDB_HINT}") from None
    return wandb


class WandbOutputFormat(KVWriter):
    """An SB3 logger output format that logs each dump's numbers to a W&B run at the dump's step."""

    def __init__(self, run: Any):
        self.run = run

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        numbers = {
            key: float(value)
            for key, value in key_values.items()
            if isinstance(value, (int, float, np.number))
            and not isinstance(value, bool)
            and "wandb" not in (key_excluded.get(key) or ())
        }
        if numbers:
            self.run.log(numbers, step=int(step))

    def close(self) -> None:
        self.run.finish()


class TrackWithWandb(BaseCallback):
    """Opens a W&B run for the training run and logs the SB3 logger's values to it (see the module docstring).

    :param project: the W&B project (default ``recurrent_rl``)
    :param entity: the W&B team or user (default: W&B's own default)
    """

    def __init__(self, project: str | None = None, entity: str | None = None):
        super().__init__()
        self.project, self.entity = project or "recurrent_rl", entity
        self.run: Any = None

    def _on_training_start(self) -> None:
        if self.run is not None:
            return
        import yaml

        wandb = require_wandb()
        run_dir = Path(self.model.logger.get_dir() or ".").parent  # the logger writes to <run>/tb
        config_file = run_dir / runs.CONFIG
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=run_dir.name,
            dir=str(run_dir),
            config=config,
            reinit="create_new",
        )
        self.model.logger.output_formats.append(WandbOutputFormat(self.run))

    def _on_step(self) -> bool:
        return True
