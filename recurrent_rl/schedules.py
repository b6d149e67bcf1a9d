"""Learning-rate and clip-range schedules that configs name and saved models store.

``lin_<x>`` in a config (rl-baselines3-zoo's spelling) is :class:`Linear`: it falls linearly from
``x`` to 0 over the run. SB3 pickles the schedule object into its zip, so its class must keep
loading: zips written by recurrent_rl 0.1.0 name it ``recurrent_rl.runs.config.Linear``, which
still imports (``recurrent_rl._aliases``). The weights-only format stores it as plain data
(``{"schedule": "linear", "initial": x}``).

A leaf module. May import: nothing of the package (the standard library only).
"""

from __future__ import annotations

import re

LINEAR = re.compile(r"^lin_(?P<value>.+)$")  # "lin_1e-3"


class Linear:
    """``initial * progress_remaining``: falls linearly from ``initial`` to 0 (zoo's ``lin_<x>``)."""

    def __init__(self, initial: float):
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining

    def __repr__(self) -> str:
        return f"Linear({self.initial})"


def make_schedule(value: float | str) -> float | Linear:
    """A config schedule (a number, or ``"lin_<number>"``, validated already) as SB3 takes it."""
    if isinstance(value, str):
        match = LINEAR.match(value)
        assert match is not None, value  # validated when the config was built
        return Linear(float(match["value"]))
    return float(value)
