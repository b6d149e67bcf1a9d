"""Torch's thread count while training: one thread for small recurrent nets, unless the user chose.

``torch_threads`` (of :class:`~recurrent_rl.RecurrentPPO`, :class:`~recurrent_rl.RecurrentSAC` and
the configs) is read by :func:`learn_threads`; :func:`using_torch_threads` sets it for the length
of a ``learn`` call and restores torch's count afterwards. The compiled memory layers' own thread
count is a setting of the speed backend (``CpuKernels(threads=...)``, the policy option
``kernel_threads``), not of this module.

"auto" leaves a count the user chose alone: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or a
``torch.set_num_threads`` call made after this module was first imported (torch does not tell
whether its count is its default, so the count at that import is the reference).

A leaf module. May import: nothing of the package (the standard library, torch).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal

import torch as th

TorchThreads = int | Literal["auto"] | None
# Environment variables that name a thread count: when one is set, "auto" leaves torch's count alone.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# torch's thread count when this module was imported: a different count later was set by the caller
# (torch does not tell whether its count is its default).
_THREADS_AT_IMPORT = th.get_num_threads()


def learn_threads(setting: TorchThreads, device: th.device | str) -> int | None:
    """The torch intra-op thread count for training on ``device`` (None: leave torch's count as it is).

    :param setting: ``"auto"``: 1 on the CPU, unless the caller chose a count, by
        ``torch.set_num_threads`` after importing :class:`RecurrentPPO` or by ``OMP_NUM_THREADS`` /
        ``MKL_NUM_THREADS``; on other devices torch's count is left alone. An integer: that many.
        None: torch's count, whatever it is.

    One thread because the small matrix products of a recurrent policy (one env step, one chunk)
    are too small to split: with torch's default of one thread per core the threads spend their
    time handing work over, and training runs several times slower (the command line's
    ``torch_threads`` setting defaults to 1 for the same reason). Large networks (image
    observations) may gain from more: pass ``torch_threads=N`` or ``None`` to :class:`RecurrentPPO`.
    """
    if setting is None:
        return None
    if setting == "auto":
        if th.device(device).type != "cpu":
            return None
        if any(os.environ.get(name, "").strip() for name in THREAD_VARIABLES):
            return None
        if th.get_num_threads() != _THREADS_AT_IMPORT:
            return None  # torch.set_num_threads was called after this module was imported
        return 1
    return check_torch_threads(setting)


def check_torch_threads(setting: Any) -> Any:
    """``setting`` if it is a valid ``torch_threads`` value (``"auto"``, None or an integer >= 1), else a ValueError."""
    if setting is None or setting == "auto":
        return setting
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"torch_threads must be 'auto', None or an integer >= 1, got {setting!r}")
    return setting


@contextlib.contextmanager
def using_torch_threads(n: int | None) -> Iterator[None]:
    """While inside, torch uses ``n`` intra-op threads (None: unchanged); afterwards the previous count again."""
    previous = th.get_num_threads()
    if n is not None and n != previous:
        th.set_num_threads(n)
    try:
        yield
    finally:
        if th.get_num_threads() != previous:
            th.set_num_threads(previous)
