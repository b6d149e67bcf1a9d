"""Running sweep tasks (seeds, tuning workers) as local processes or as Ray tasks.

Both executors run the same picklable function on a list of arguments and return its results in
order. ``local``: one spawned process per task on this machine, ``workers`` at a time (spawned,
not forked: torch and forked threads do not mix); a process that dies without a result (killed
by a signal, by the out-of-memory killer) leaves a :class:`WorkerDied` in its task's place, or
the result of the replacement task the caller asks for, and the other tasks go on. ``ray``: one
Ray task per argument, one CPU each, on the cluster at ``address`` (``auto``: the cluster this
machine has joined with ``ray start``; ``HOST:6379``: that head node; ``local`` or none: a Ray
runtime started for this command on this machine).
Ray is the optional extra ``recurrent_rl[ray]``, imported only here and only when asked for.
"""

from __future__ import annotations

import multiprocessing
import signal
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
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

EXECUTORS = ("local", "ray")
BACKENDS = EXECUTORS  # their name before "backend" was left to the speed backend
WORKERS_PER_CPU = 4  # local worker processes per CPU at most: each holds an env, a model and torch


@dataclass(frozen=True)
class WorkerDied:
    """A task whose worker process ended without a result: ``exitcode`` is ``-N`` for signal N."""

    pid: int | None
    exitcode: int | None

    def __str__(self) -> str:
        if self.exitcode is not None and self.exitcode < 0:
            try:
                how = f"was killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                how = f"was killed by signal {-self.exitcode}"
        else:
            how = f"ended with exit code {self.exitcode} without a result"
        return f"worker process {self.pid} {how}"


def check_local_workers(workers: int | None) -> None:
    """A :class:`UserInputError` if ``workers`` local processes are far more than this machine's CPUs."""
    cpus = default_workers()
    if workers is not None and workers > WORKERS_PER_CPU * cpus:
        raise UserInputError(
            f"--workers {workers}: this machine has {cpus} CPU(s), and local workers are processes that each "
            f"train a model; use at most {WORKERS_PER_CPU * cpus} (or --executor ray for a cluster)"
        )


def run_tasks(
    fn: Callable[[Any], Any],
    args: Sequence[Any],
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    replace: Callable[[Any, WorkerDied], Any] | None = None,
) -> list[Any]:
    """``[fn(a) for a in args]``, each call in its own process (local) or Ray task (ray), ``workers`` at a time.

    An exception raised by ``fn`` is raised here once every task has ended (the first, in the
    order of ``args``). A local process that dies without a result gives a :class:`WorkerDied`
    in its task's place; with ``replace``, ``replace(arg, died)`` is called first (in this
    process), and when it returns an argument rather than None, that task runs in a new process
    and its result takes the place.
    """
    if executor not in EXECUTORS:
        raise UserInputError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        ray = connect(address, num_cpus=workers if address in (None, "local") else None)
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        return list(ray.get([remote.remote(a) for a in args]))
    workers = workers or default_workers()
    if workers == 1 or len(args) == 1:
        return [fn(a) for a in args]
    return _run_processes(fn, list(args), min(workers, len(args)), replace)


def _call(fn: Callable[[Any], Any], arg: Any, send: Any) -> None:
    """In a worker process: ``fn(arg)``, its result or exception sent back through ``send``."""
    try:
        outcome: tuple[str, Any] = ("result", fn(arg))
    except BaseException as error:  # sent to the parent, which raises it
        outcome = ("error", error)
    try:
        send.send(outcome)
    except Exception as error:  # an exception that does not pickle: its text
        send.send(("error", RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({error})")))
    finally:
        send.close()


def _run_processes(
    fn: Callable[[Any], Any], args: list[Any], workers: int, replace: Callable[[Any, WorkerDied], Any] | None
) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    pending = list(enumerate(args))  # (slot, argument) still to start
    running: dict[Any, tuple[int, Any, Any]] = {}  # receiving end (a Connection) -> (slot, argument, process)
    results: list[Any] = [None] * len(args)
    errors: dict[int, BaseException] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                slot, arg = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_call, args=(fn, arg, send))
                process.start()
                send.close()  # the child's end only: EOF here when the child dies
                running[receive] = (slot, arg, process)
            ready: list[Any] = wait(list(running))
            for receive in ready:
                slot, arg, process = running.pop(receive)
                try:
                    kind, value = receive.recv()
                except EOFError:  # the process ended without sending anything: killed
                    kind, value = "died", None
                finally:
                    receive.close()
                process.join()
                if kind == "result":
                    results[slot] = value
                elif kind == "error":
                    errors[slot] = value
                else:
                    died = WorkerDied(process.pid, process.exitcode)
                    again = replace(arg, died) if replace is not None else None
                    if again is None:
                        results[slot] = died
                    else:
                        pending.insert(0, (slot, again))
    except BaseException:  # Ctrl-C reaches the workers too: they stop on their own; wait for them
        for _, _, process in running.values():
            process.join()
        raise
    if errors:
        raise errors[min(errors)]
    return results


def executor_argument(executor: str, backend: str | None, where: str) -> str:
    """``executor``, or the deprecated ``backend=`` given in its place (with a FutureWarning)."""
    if backend is None:
        return executor
    warnings.warn(
        f"{where}(backend=...) is deprecated: the word is executor={backend!r} now (backend names the speed "
        "backend of the policies); backend= will be removed after 2027-06-30",
        FutureWarning,
        stacklevel=3,
    )
    return backend
