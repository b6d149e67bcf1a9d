"""Ray, when asked for: the connection to a cluster (or a runtime started on this machine).

Ray is the optional extra ``recurrent_rl[ray]``; it is imported here, only when a function asks
for it. The sweeps' executor (:mod:`recurrent_rl.sweeps.executors`) and the rollout runners
(:mod:`recurrent_rl.runners`) both connect through :func:`connect`. Addresses: ``auto`` (the cluster
this machine has joined with ``ray start``), ``HOST:6379`` (that head node), ``local`` or None (a
Ray runtime started for this process on this machine).

A leaf module. May import: ``errors`` (the standard library; Ray when asked for).
"""

from __future__ import annotations

import os
from typing import Any

from recurrent_rl.errors import UserInputError


def require_ray(what: str = "--executor ray") -> Any:
    """The ``ray`` module, or a :class:`UserInputError` that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise UserInputError(
            f"{what} needs Ray, which is not installed here: pip install 'recurrent_rl[ray]'"
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


def connect(address: str | None, num_cpus: int | None = None, what: str = "--executor ray") -> Any:
    """Connect to (or start) a Ray runtime; return the ``ray`` module.

    :param num_cpus: the CPUs a runtime started here declares (None: this machine's)
    :param what: the option that asked for Ray, for the message when it is not installed
    """
    ray = require_ray(what)
    if ray.is_initialized():
        return ray
    if address not in (None, "local"):
        check_reachable(address)
    try:
        if address in (None, "local"):
            # address local: a new runtime for this process, even where a cluster runs on this machine
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
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
