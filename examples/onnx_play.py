"""Play an exported policy with onnxruntime and NumPy only: no torch, no stable-baselines3.

Export a trained run first, then play it on its env::

    recurrent-rl export runs/<run>                     # writes runs/<run>/model.onnx
    python examples/onnx_play.py runs/<run>/model.onnx --env pomdp/CartPoleNoVel-v1 --episodes 10

The memory state is an explicit input and output of the graph: the runner starts each episode
from zeros with ``episode_start = 1`` and feeds each step's next state back in. Episode ``i`` is
reset with seed ``--seed + i``, as ``recurrent-rl evaluate`` does, so both give the same returns.
In your own code, step the graph with :class:`recurrent_rl.export.play.OnnxPolicy`::

    policy = OnnxPolicy("model.onnx")
    action, state, _ = policy.step(obs[None], state=None, episode_start=[1.0])   # first step
    action, state, _ = policy.step(obs[None], state, episode_start=[0.0])        # the steps after
"""

from __future__ import annotations

import sys

from recurrent_rl.export.play import main

if __name__ == "__main__":
    sys.exit(main())
