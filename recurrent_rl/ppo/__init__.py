"""The algorithm: :class:`RecurrentPPO` (state-carrying rollouts, SB3's update) and its rollout buffer.

- :mod:`.algorithm`: :class:`~.algorithm.RecurrentPPO`;
- :mod:`.buffers`: SB3's rollout buffers with memory at chunk starts and minibatches of whole chunks;
- :mod:`.refresh`: fresh chunk-start states for the update (``state_refresh``; burn-in lives in the buffer);
- :mod:`.masking`: :class:`~.masking.MaskableRecurrentPPO` (invalid-action masks, sb3-contrib's convention);
- :mod:`.contrib`: models saved by sb3-contrib's RecurrentPPO, converted for ``RecurrentPPO.load``.

May import: ``nets``, ``io`` (the weights-only copy it rebuilds itself from) and the leaf modules;
torch and SB3. Never ``accel`` (backends are resolved through :mod:`recurrent_rl.nets.backend`) or ``runs``.
"""

from recurrent_rl.ppo.algorithm import RecurrentPPO
from recurrent_rl.ppo.masking import MaskableRecurrentPPO

__all__ = ["MaskableRecurrentPPO", "RecurrentPPO"]
