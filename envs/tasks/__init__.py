"""Memory tasks: small pure-NumPy environments that need memory to be solved."""

from envs.tasks.sequence import CountRecall, RepeatFirst, RepeatPrevious, SequenceTask
from envs.tasks.tmaze import TMaze

__all__ = ["CountRecall", "RepeatFirst", "RepeatPrevious", "SequenceTask", "TMaze"]
