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
import os
from collections.abc import Callable, Sequence
from typing import Any

from recurrent_rl.errors import UserInputError

BACKENDS = ("local", "ray")


def require_ray() -> Any:
    """The ``ray`` module, or a :class:`UserInputError` that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise UserInputError(
            "--backend ray needs Ray, which is not installed here: pip install 'recurrent_rl[ray]'"
        ) from None
    return ray


def default_workers() -> int:
    """One worker per CPU this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


REACH_TIMEOUT = 10.0  # seconds to open a TCP connection to a HOST:PORT address before Ray is asked


def check_reachable(address: str, timeout: float = REACH_TIMEOUT) -> None:
    """A :class:`UserInputError` unless a ``HOST:PORT`` address accepts a TCP connection.

    ``ray.init`` retries an address that does not answer for minutes before it gives up; a plain
    connection attempt says at once (or after ``timeout``) that nothing listens there.
    """
    import socket

    host, _, port = address.rpartition(":")
    if address.startswith(("ray://", "auto")) or not host or not port.isdigit():
        return  # ray:// (Ray Client) and auto are Ray's to resolve
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or type(error).__name__)
        raise UserInputError(
            f"--address {address}: nothing answers there ({reason}); start the head node with "
            f"`ray start --head --port {port}` on {host}, or give auto for the cluster this machine joined"
        ) from None


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Connect to (or start) a Ray runtime; return the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address not in (None, "local"):
        check_reachable(address)
    try:
        if address in (None, "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UserInputError(
            f"--address {address}: cannot connect to a Ray cluster there ({error}); give the head "
            "node as HOST:6379, or auto for the cluster this machine joined with ray start"
        ) from None
    return ray


def ray_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


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
