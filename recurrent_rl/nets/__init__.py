"""The networks, in plain torch: memory cores, the recurrent actor-critic policy, and the backend hook.

- :mod:`.memory`: :class:`~.memory.MemoryCore` (every memory) and the state helpers;
- :mod:`.scan`, :mod:`.ffm`, :mod:`.attention`: minGRU / minLSTM, Fast and Forgetful Memory, the
  attention memory;
- :mod:`.policies`: :class:`~.policies.RecurrentActorCriticPolicy` and its aliases;
- :mod:`.backend`: the one place where a speed backend (:mod:`recurrent_rl.accel`) plugs in.

May import: the leaf modules (``types``, ``errors``, ``sequences``); torch and SB3. Never the speed
layer (``accel``), the algorithm (``ppo``) or ``runs``.
"""
