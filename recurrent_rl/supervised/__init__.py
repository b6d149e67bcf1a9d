"""Supervised sequence models (GRU / LSTM / Elman RNN) and their reuse as a policy's encoder.

recorded trajectories or plain arrays (:mod:`.data`) -> sequence model (:mod:`.models`, the
policies' memory cores plus a head) -> trainer (:mod:`.trainer`) -> ``encoder.pt`` ->
:func:`recurrent_rl.supervised.encoder.load_encoder`. :mod:`.pretrain` runs the whole path from a
config (:mod:`.config`: the same typed, validated YAML configs as the RL side's).

May import: ``config``, ``io``, ``algorithms``, ``ppo``, ``nets``, ``envs`` and the leaf modules.
The names below are imported on first use (PEP 562), so importing one submodule (the configs)
does not load the datasets, models and trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC: dict[str, str] = {
    "Batch": "recurrent_rl.supervised.data",
    "SequenceDataset": "recurrent_rl.supervised.data",
    "Trajectories": "recurrent_rl.supervised.data",
    "collate": "recurrent_rl.supervised.data",
    "make_env": "recurrent_rl.supervised.data",
    "record_trajectories": "recurrent_rl.supervised.data",
    "SequenceModel": "recurrent_rl.supervised.models",
    "SequenceModelConfig": "recurrent_rl.supervised.models",
    "load_sequence_model": "recurrent_rl.supervised.models",
    "save_sequence_model": "recurrent_rl.supervised.models",
    "FitConfig": "recurrent_rl.supervised.config",
    "PretrainConfig": "recurrent_rl.supervised.config",
    "FitResult": "recurrent_rl.supervised.trainer",
    "evaluate": "recurrent_rl.supervised.trainer",
    "fit": "recurrent_rl.supervised.trainer",
}

__all__ = sorted([*_PUBLIC, "TrainConfig"])


_MODULES = ("config", "data", "encoder", "examples", "models", "presets", "pretrain", "trainer")


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":  # deprecated name of FitConfig (runs.config.TrainConfig is the RL run's)
        from recurrent_rl.supervised.config import deprecated_name

        return deprecated_name(__name__, name)
    if name in _MODULES:  # recurrent_rl.supervised.data works without importing the submodule first
        return importlib.import_module(f"{__name__}.{name}")
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from recurrent_rl.supervised.config import FitConfig as FitConfig, PretrainConfig as PretrainConfig
    from recurrent_rl.supervised.data import (
        Batch as Batch,
        SequenceDataset as SequenceDataset,
        Trajectories as Trajectories,
        collate as collate,
        make_env as make_env,
        record_trajectories as record_trajectories,
    )
    from recurrent_rl.supervised.models import (
        SequenceModel as SequenceModel,
        SequenceModelConfig as SequenceModelConfig,
        load_sequence_model as load_sequence_model,
        save_sequence_model as save_sequence_model,
    )
    from recurrent_rl.supervised.trainer import FitResult as FitResult, evaluate as evaluate, fit as fit

    TrainConfig = FitConfig
