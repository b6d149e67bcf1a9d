"""Supervised sequence models (GRU / LSTM / Elman RNN) and their reuse as a policy's encoder.

recorded trajectories or plain arrays (:mod:`.data`) -> sequence model (:mod:`.models`, the
policies' memory cores plus a head) -> trainer (:mod:`.trainer`) -> ``encoder.pt`` ->
:func:`recurrent_rl.supervised.encoder.load_encoder`. :mod:`.pretrain` runs the whole path from a config.
"""

from recurrent_rl.supervised.data import Batch, SequenceDataset, Trajectories, collate, make_env, record_trajectories
from recurrent_rl.supervised.models import (
    SequenceModel,
    SequenceModelConfig,
    load_sequence_model,
    save_sequence_model,
)
from recurrent_rl.supervised.trainer import FitResult, TrainConfig, evaluate, fit

__all__ = [
    "Batch",
    "FitResult",
    "SequenceDataset",
    "SequenceModel",
    "SequenceModelConfig",
    "TrainConfig",
    "Trajectories",
    "collate",
    "evaluate",
    "fit",
    "load_sequence_model",
    "make_env",
    "record_trajectories",
    "save_sequence_model",
]
