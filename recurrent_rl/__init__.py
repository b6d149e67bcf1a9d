"""recurrent_rl: memory-based reinforcement learning (GRU, LSTM and Elman RNN PPO) on stable-baselines3.

The package, along the data path::

    envs/        the pomdp/ environments and wrappers (installed as recurrent_rl.envs)
    nets/        memory cores, the recurrent policy, the backend hook (plain torch)
    accel/       the CPU speed backend (compiled layers and heads, lean Adam and categorical)
    ppo/         RecurrentPPO and its rollout buffer
    supervised/  sequence models, their trainer and datasets, pretrained encoders
    runs/        configs and presets, run folders, training, callbacks, evaluation, the CLI
    types.py, errors.py, sequences.py   leaf modules every part may import

Importing the package registers the ``pomdp/`` environments and nothing heavier: the names
below are imported on first use (PEP 562), so ``import recurrent_rl`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recurrent_rl import _aliases
from recurrent_rl import envs as _envs  # noqa: F401  registers the pomdp/ environments

__version__ = "0.1.0"

_aliases.install()

_PUBLIC: dict[str, str] = {
    "RecurrentPPO": "recurrent_rl.ppo.algorithm",
    "MemoryCore": "recurrent_rl.nets.memory",
    "NonFiniteLossError": "recurrent_rl.errors",
    "encoder_policy_kwargs": "recurrent_rl.supervised.encoder",
    "load_encoder": "recurrent_rl.supervised.encoder",
    **{
        name: "recurrent_rl.nets.policies"
        for name in (
            "RecurrentActorCriticPolicy",
            "MlpGruPolicy", "MlpLstmPolicy", "MlpRnnPolicy",
            "CnnGruPolicy", "CnnLstmPolicy", "CnnRnnPolicy",
            "MultiInputGruPolicy", "MultiInputLstmPolicy", "MultiInputRnnPolicy",
        )
    },  # fmt: skip
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'recurrent_rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


if TYPE_CHECKING:
    from recurrent_rl.errors import NonFiniteLossError
    from recurrent_rl.nets.memory import MemoryCore
    from recurrent_rl.nets.policies import (
        CnnGruPolicy,
        CnnLstmPolicy,
        CnnRnnPolicy,
        MlpGruPolicy,
        MlpLstmPolicy,
        MlpRnnPolicy,
        MultiInputGruPolicy,
        MultiInputLstmPolicy,
        MultiInputRnnPolicy,
        RecurrentActorCriticPolicy,
    )
    from recurrent_rl.ppo.algorithm import RecurrentPPO
    from recurrent_rl.supervised.encoder import encoder_policy_kwargs, load_encoder
