"""The ``recurrent-rl`` command: one module per command, a thin layer over the rest of the package.

- :mod:`.main`: the parser and :func:`main` (the entry point: bad input is one ``error:`` line);
- :mod:`.train` (``train``, ``--resume``, ``--seeds``), :mod:`.tune`, :mod:`.evaluate`,
  :mod:`.export`, :mod:`.pretrain`, :mod:`.listing` (``presets``, ``envs``);
- :mod:`.common`: exit codes and what several commands share.

The top of the package. May import: everything. Nothing imports it. Its start-up
imports no torch, SB3 or TensorBoard (``--help`` answers at once); each command imports what it
needs when it runs. Everything a command does, a script can do by calling the same function.
"""

from recurrent_rl.cli.common import EXIT_FAILED, EXIT_SIGNAL, EXIT_USAGE
from recurrent_rl.cli.main import build_parser, main

__all__ = ["EXIT_FAILED", "EXIT_SIGNAL", "EXIT_USAGE", "build_parser", "main"]
