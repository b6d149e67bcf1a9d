"""Memory tasks: small pure-NumPy environments that need memory to be solved."""

from recurrent_rl.envs.tasks.sequence import CountRecall, RepeatFirst, RepeatPrevious, SequenceTask
from recurrent_rl.envs.tasks.tmaze import TMaze
from recurrent_rl.envs.tasks.visit import VisitAll

__all__ = ["CountRecall", "RepeatFirst", "RepeatPrevious", "SequenceTask", "TMaze", "VisitAll"]
