"""Envs in subprocesses on this machine: SB3's ``SubprocVecEnv``, with a failure as one message.

SB3's worker process dies when its env raises (the exception is printed from the child, and the
learner then fails on a broken pipe, or waits). :class:`CheckedSubprocVecEnv` runs SB3's own
worker loop inside a guard that sends the exception back instead, so an env that raises, a
worker that cannot make its env, and a worker that is killed all end the run with one
:class:`EnvProcessError` naming the env, the worker and what happened. Everything else is SB3's
``SubprocVecEnv``; the start method is ``forkserver`` where the platform has it (torch's threads
and a forked process do not mix), else ``spawn``.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import SubprocVecEnv
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnv
from stable_baselines3.common.vec_env.subproc_vec_env import _worker


class EnvProcessError(RuntimeError):
    """An env that runs in another process failed there (it raised, or its process died)."""


class _Failure:
    """What a guarded worker sends back instead of a result: the exception, as text."""

    def __init__(self, error: BaseException):
        self.kind = type(error).__name__
        self.message = (str(error).strip().splitlines() or [""])[0][:300]


def _guarded_worker(remote: Any, parent_remote: Any, env_fn_wrapper: CloudpickleWrapper) -> None:
    """SB3's worker loop; an exception (the env's, or making it) is sent back rather than raised."""
    try:
        _worker(remote, parent_remote, env_fn_wrapper)
    except BaseException as error:  # sent to the learner, which raises it as one message
        try:
            remote.send(_Failure(error))
        except (OSError, EOFError):  # the learner is gone
            pass


class _CheckedRemote:
    """The learner's end of one worker's pipe: a failure or a dead worker becomes :class:`EnvProcessError`."""

    def __init__(self, remote: Any, index: int, process: Any, name: str):
        self._remote, self.index, self.process, self.name = remote, index, process, name

    def _died(self) -> EnvProcessError:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"ended (exit code {code})"
        return EnvProcessError(f"env worker {self.index} of {self.name} (pid {self.process.pid}) {how}")

    def recv(self) -> Any:
        try:
            value = self._remote.recv()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            raise self._died() from None
        if isinstance(value, _Failure):
            raise EnvProcessError(
                f"{self.name} raised {value.kind} in env worker {self.index} (pid {self.process.pid}): {value.message}"
            )
        return value

    def send(self, value: Any) -> None:
        try:
            self._remote.send(value)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise self._died() from None

    def close(self) -> None:
        self._remote.close()

    def poll(self, *args: Any) -> bool:
        return bool(self._remote.poll(*args))


class CheckedSubprocVecEnv(SubprocVecEnv):
    """SB3's ``SubprocVecEnv`` (one process per env) whose failures are one :class:`EnvProcessError`.

    :param env_fns: one picklable function per env (``EnvFactory``, a lambda, ...)
    :param start_method: multiprocessing's; default ``forkserver`` where available, else ``spawn``
    :param name: how messages name the env (its id)
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]], start_method: str | None = None, name: str = "the env"):
        # SB3's constructor, with the guarded worker as the processes' target
        self.waiting = False
        self.closed = False
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        remotes, work_remotes = zip(*[ctx.Pipe() for _ in env_fns])
        self.processes = []
        for work_remote, remote, env_fn in zip(work_remotes, remotes, env_fns):
            process = ctx.Process(  # type: ignore[attr-defined]
                target=_guarded_worker, args=(work_remote, remote, CloudpickleWrapper(env_fn)), daemon=True
            )
            process.start()
            self.processes.append(process)
            work_remote.close()
        self.remotes = [_CheckedRemote(r, i, p, name) for i, (r, p) in enumerate(zip(remotes, self.processes))]
        self.work_remotes = work_remotes
        try:
            self.remotes[0].send(("get_spaces", None))
            observation_space, action_space = self.remotes[0].recv()
        except EnvProcessError:
            self.close()
            raise
        VecEnv.__init__(self, len(env_fns), observation_space, action_space)

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        except EnvProcessError:  # a dead worker cannot take its close command; the others are closed
            for process in self.processes:
                if process.is_alive():
                    process.terminate()
            self.closed = True
