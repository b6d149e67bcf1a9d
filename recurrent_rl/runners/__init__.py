"""Rollout runners: one agent's collection spread over processes and machines (Ray actors).

- :mod:`~recurrent_rl.runners.runner`: :class:`RolloutRunner`, K envs with a CPU copy of the
  algorithm and its own memory state, running the algorithm's own ``collect_rollouts``;
- :mod:`~recurrent_rl.runners.group`: :class:`RunnerVecEnv`, the learner's VecEnv of N such
  runners (Ray actors): publishes weights and statistics, assembles the rollout buffer, replaces
  dead runners;
- :mod:`~recurrent_rl.runners.moments`: normalisation statistics split and merged across runners;
- :mod:`~recurrent_rl.runners.subproc`: :class:`CheckedSubprocVecEnv`, SB3's ``SubprocVecEnv``
  (one process per env on this machine) whose failures are one :class:`EnvProcessError`.

May import: ``ppo``, ``nets`` and the leaf modules (``cluster`` connects to Ray, the optional extra
``recurrent_rl[ray]``, when a RunnerVecEnv is made). Configs, run folders and the
command line build on it, never the other way round.
"""

from recurrent_rl.runners.group import RunnerError, RunnerVecEnv
from recurrent_rl.runners.runner import RolloutPiece, RolloutRunner, RunnerSpec
from recurrent_rl.runners.subproc import CheckedSubprocVecEnv, EnvProcessError

__all__ = [
    "CheckedSubprocVecEnv",
    "EnvProcessError",
    "RolloutPiece",
    "RolloutRunner",
    "RunnerError",
    "RunnerSpec",
    "RunnerVecEnv",
]
