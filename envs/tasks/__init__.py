"""Memory tasks: small pure-NumPy environments that need memory to be solved."""

from recurrent_rl.envs.tasks.sequence import CountRecall, RepeatFirst, RepeatPrevious, SequenceTask
from recurrent_rl.envs.tasks.tmaze import TMaze

__all__ = ["CountRecall", "RepeatFirst", "RepeatPrevious", "SequenceTask", "TMaze"]
