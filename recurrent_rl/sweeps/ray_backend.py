"""Running sweep tasks (seeds, tuning workers) as local processes or as Ray tasks.

Both backends run the same picklable function on a list of arguments and return its results in
order. ``local``: a pool of spawned processes on this machine (spawned, not forked: torch and
forked threads do not mix). ``ray``: one Ray task per argument, one CPU each, on the cluster at
``address`` (``auto``: the cluster this machine has joined with ``ray start``; ``HOST:6379``: that
head node; ``local`` or none: a Ray runtime started for this command on this machine).
Ray is the optional extra ``recurrent_rl[ray]``, imported only here and only when asked for.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

from recurrent_rl.cluster import (  # noqa: F401  re-exported: the sweeps' names of the Ray helpers
    REACH_TIMEOUT,
    check_reachable,
    connect,
    default_workers,
    ray_cpus,
    require_ray,
)
from recurrent_rl.errors import UserInputError

BACKENDS = ("local", "ray")


def run_tasks(
    fn: Callable[[Any], Any],
    args: Sequence[Any],
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> list[Any]:
    """``[fn(a) for a in args]``, each call in its own process (local) or Ray task (ray), ``workers`` at a time."""
    if backend not in BACKENDS:
        raise UserInputError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "ray":
        ray = connect(address, num_cpus=workers if address in (None, "local") else None)
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        return list(ray.get([remote.remote(a) for a in args]))
    workers = workers or default_workers()
    if workers == 1 or len(args) == 1:
        return [fn(a) for a in args]
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=context) as pool:
        return list(pool.map(fn, args))
