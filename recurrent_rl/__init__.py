"""recurrent_rl: memory-based reinforcement learning (recurrent and attention PPO) on stable-baselines3.

The package, along the data path::

    envs/        the pomdp/ environments and wrappers (installed as recurrent_rl.envs)
    nets/        memory cores, the recurrent policy, the backend hook (plain torch)
    accel/       the CPU speed backend (compiled memory layers and scan, lean Adam and categorical)
    ppo/         RecurrentPPO and its rollout buffer
    sac/         RecurrentSAC, its policy and its sequence replay buffer
    supervised/  sequence models, their trainer and datasets, pretrained encoders
    runs/        configs and presets, run folders, training, callbacks, evaluation, the CLI
    export/      ONNX export, the torch-free ONNX runner, the weights-only (safe) model format
    types.py, errors.py, sequences.py, atomic.py, versions.py   leaf modules every part may import

Importing the package registers the ``pomdp/`` environments and nothing heavier: the names
below are imported on first use (PEP 562), so ``import recurrent_rl`` does not load torch.
``__version__`` is read from the installed distribution's metadata, whose one source is
``version`` in pyproject.toml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import recurrent_rl.envs as _envs  # noqa: F401  registers the pomdp/ environments
from recurrent_rl import _aliases

_aliases.install()

_POLICIES = (
    "RecurrentActorCriticPolicy",
    "MlpGruPolicy",
    "MlpLstmPolicy",
    "MlpRnnPolicy",
    "CnnGruPolicy",
    "CnnLstmPolicy",
    "CnnRnnPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmPolicy",
    "MultiInputRnnPolicy",
)
_PUBLIC: dict[str, str] = {
    "RecurrentPPO": "recurrent_rl.ppo.algorithm",
    "MaskableRecurrentPPO": "recurrent_rl.ppo.masking",
    "RecurrentSAC": "recurrent_rl.sac.algorithm",
    "MemoryCore": "recurrent_rl.nets.memory",
    "NonFiniteLossError": "recurrent_rl.errors",
    "encoder_policy_kwargs": "recurrent_rl.supervised.encoder",
    "load_encoder": "recurrent_rl.supervised.encoder",
    "export_onnx": "recurrent_rl.export.onnx",
    "save_safe": "recurrent_rl.io.safe",
    "load_safe": "recurrent_rl.algorithms",
    **dict.fromkeys(_POLICIES, "recurrent_rl.nets.policies"),
}

__all__ = sorted(_PUBLIC)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("recurrent_rl")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        version = globals()["__version__"] = _version()
        return version
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'recurrent_rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, "__version__"})


if TYPE_CHECKING:
    __version__: str

    from recurrent_rl.algorithms import load_safe as load_safe
    from recurrent_rl.errors import NonFiniteLossError as NonFiniteLossError
    from recurrent_rl.export.onnx import export_onnx as export_onnx
    from recurrent_rl.io.safe import save_safe as save_safe
    from recurrent_rl.nets.memory import MemoryCore as MemoryCore
    from recurrent_rl.nets.policies import (
        CnnGruPolicy as CnnGruPolicy,
        CnnLstmPolicy as CnnLstmPolicy,
        CnnRnnPolicy as CnnRnnPolicy,
        MlpGruPolicy as MlpGruPolicy,
        MlpLstmPolicy as MlpLstmPolicy,
        MlpRnnPolicy as MlpRnnPolicy,
        MultiInputGruPolicy as MultiInputGruPolicy,
        MultiInputLstmPolicy as MultiInputLstmPolicy,
        MultiInputRnnPolicy as MultiInputRnnPolicy,
        RecurrentActorCriticPolicy as RecurrentActorCriticPolicy,
    )
    from recurrent_rl.ppo.algorithm import RecurrentPPO as RecurrentPPO
    from recurrent_rl.ppo.masking import MaskableRecurrentPPO as MaskableRecurrentPPO
    from recurrent_rl.sac.algorithm import RecurrentSAC as RecurrentSAC
    from recurrent_rl.supervised.encoder import (
        encoder_policy_kwargs as encoder_policy_kwargs,
        load_encoder as load_encoder,
    )
