"""Recurrent off-policy learning: :class:`RecurrentSAC`, its policy and its sequence replay buffer.

- :mod:`.algorithm`: :class:`~.algorithm.RecurrentSAC` (SB3's SAC with memories; collection steps
  the memories, the update runs them over windows of episodes);
- :mod:`.policies`: :class:`~.policies.RecurrentSACPolicy` (actor, twin critics and target, each
  reading the history through a :class:`~recurrent_rl.nets.memory.MemoryCore`);
- :mod:`.buffers`: :class:`~.buffers.SequenceReplayBuffer` (SB3's replay buffer with episode
  boundaries, stored memory states, and windows with burn-in, padding and a loss mask);
- :mod:`.persistence`: rebuilding from a weights-only copy, the replay buffer as plain arrays.

May import: ``nets``, ``io`` and the leaf modules (``types``, ``errors``, ``sequences``, ``threads``,
``atomic``, ``received``); torch and SB3. Never ``accel`` or ``runs``.
"""

from recurrent_rl.sac.algorithm import RecurrentSAC
from recurrent_rl.sac.buffers import SequenceReplayBuffer
from recurrent_rl.sac.policies import RecurrentSACPolicy

__all__ = ["RecurrentSAC", "RecurrentSACPolicy", "SequenceReplayBuffer"]
