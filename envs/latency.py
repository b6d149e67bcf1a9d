"""Slow variants of an env: a fixed cost added to every step, standing in for a simulator.

:class:`StepCost` makes each ``step`` (and ``reset``) take ``seconds`` longer, either waiting
(``busy=False``: ``time.sleep``, as a remote simulator, a game engine behind a socket or a robot
does, leaving the CPU free) or computing (``busy=True``: a busy loop until the thread has used
``seconds`` of CPU time, as a physics simulator does). The observations, rewards and episodes are the wrapped
env's. Used by ``benchmarks/scaling.py`` and the runners' tests.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym

from recurrent_rl.envs._checks import check_float


class StepCost(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """``env`` with ``seconds`` added to every step and reset (slept, or ``seconds`` of CPU time with ``busy``)."""

    def __init__(self, env: gym.Env, seconds: float, busy: bool = False):
        check_float("seconds", seconds, low=0.0)
        gym.utils.RecordConstructorArgs.__init__(self, seconds=seconds, busy=busy)
        gym.Wrapper.__init__(self, env)
        self.seconds, self.busy = float(seconds), bool(busy)

    def _spend(self) -> None:
        if self.seconds <= 0:
            return
        if not self.busy:
            time.sleep(self.seconds)
            return
        end = time.thread_time() + self.seconds  # CPU time: the same work however busy the machine is
        while time.thread_time() < end:
            pass

    def step(self, action: Any) -> Any:
        self._spend()
        return self.env.step(action)

    def reset(self, **kwargs: Any) -> Any:
        self._spend()
        return self.env.reset(**kwargs)
