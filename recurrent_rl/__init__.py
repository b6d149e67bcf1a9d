"""recurrent_rl: memory-based reinforcement learning (GRU, LSTM and Elman RNN PPO) on stable-baselines3."""

import envs as _envs  # noqa: F401  registers the pomdp/ environments for gym.make and env ids
from recurrent_rl.encoder import encoder_policy_kwargs, load_encoder
from recurrent_rl.errors import NonFiniteLossError
from recurrent_rl.memory import MemoryCore
from recurrent_rl.policies import (
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
from recurrent_rl.ppo import RecurrentPPO

__version__ = "0.1.0"

__all__ = [
    "CnnGruPolicy",
    "CnnLstmPolicy",
    "CnnRnnPolicy",
    "MemoryCore",
    "MlpGruPolicy",
    "MlpLstmPolicy",
    "MlpRnnPolicy",
    "MultiInputGruPolicy",
    "MultiInputLstmPolicy",
    "MultiInputRnnPolicy",
    "NonFiniteLossError",
    "RecurrentActorCriticPolicy",
    "RecurrentPPO",
    "encoder_policy_kwargs",
    "load_encoder",
]
