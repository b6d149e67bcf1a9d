"""The backend hook: the one place where a speed backend plugs into the model code.

The policy does four things through its backend, and nothing else in the model code knows that
a backend exists:

- ``forward_cores``: run memory cores over whole ``(T, B, F)`` chunks (the update);
- ``step_cores``: one step of memory cores (rollouts, ``predict``);
- ``action_distribution``: the action distribution of a latent (None: SB3's own);
- ``optimizer``: the optimizer class and keyword arguments, before the policy builds it.

:class:`TorchBackend` is plain torch and SB3, the same code on every device. The policy option
``backend`` (and the config key ``policy.backend``) names one:

- ``"torch"``: :class:`TorchBackend`;
- ``"cpu-kernels"``: the CPU speed layer, :class:`recurrent_rl.accel.backend.CpuKernels`
  (compiled memory layers and linear scan, a lean Adam and categorical distribution; each part falls
  back to torch per call where it does not apply: CUDA tensors, float64, custom modules);
- ``"auto"`` (the default): ``"cpu-kernels"`` while the policy's parameters are on the CPU,
  ``"torch"`` on any other device. The speed layer pays on the CPUs measured (README,
  Benchmarks); on a GPU nothing in it applies.

A backend object (any object with these methods, such as ``CpuKernels(parts=...)``) may be passed
instead of a name.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import torch as th

from recurrent_rl.nets import memory
from recurrent_rl.types import MemoryState

BACKENDS = ("auto", "torch", "cpu-kernels")
# where the named backends live: the model code never imports the speed layer itself
_LOCATIONS = {"cpu-kernels": ("recurrent_rl.accel.backend", "CpuKernels")}


class Backend(Protocol):
    name: str

    def forward_cores(
        self,
        cores: list[memory.MemoryCore],
        xs: list[th.Tensor],
        states: list[MemoryState],
        episode_starts: th.Tensor,
        need_final_state: bool = True,
    ) -> list[tuple[th.Tensor, MemoryState | None]]: ...

    def step_cores(
        self, cores: list[memory.MemoryCore], xs: list[th.Tensor], states: list[MemoryState], episode_start: th.Tensor
    ) -> list[tuple[th.Tensor, MemoryState]]: ...

    def action_distribution(self, policy: Any, latent_pi: th.Tensor) -> Any | None: ...

    def optimizer(
        self, optimizer_class: type[th.optim.Optimizer] | None, optimizer_kwargs: dict[str, Any] | None
    ) -> tuple[type[th.optim.Optimizer] | None, dict[str, Any] | None]: ...


class TorchBackend:
    """Plain torch and SB3: torch's recurrent modules and cell functions, SB3's optimizer and
    distributions."""

    name = "torch"

    def forward_cores(
        self,
        cores: list[memory.MemoryCore],
        xs: list[th.Tensor],
        states: list[MemoryState],
        episode_starts: th.Tensor,
        need_final_state: bool = True,
    ) -> list[tuple[th.Tensor, MemoryState | None]]:
        return memory.forward_cores(cores, xs, states, episode_starts, need_final_state)

    def step_cores(
        self, cores: list[memory.MemoryCore], xs: list[th.Tensor], states: list[MemoryState], episode_start: th.Tensor
    ) -> list[tuple[th.Tensor, MemoryState]]:
        return memory.step_cores(cores, xs, states, episode_start)

    def action_distribution(self, policy: Any, latent_pi: th.Tensor) -> None:
        return None

    def optimizer(
        self, optimizer_class: type[th.optim.Optimizer] | None, optimizer_kwargs: dict[str, Any] | None
    ) -> tuple[type[th.optim.Optimizer] | None, dict[str, Any] | None]:
        return optimizer_class, optimizer_kwargs

    def __repr__(self) -> str:
        return "TorchBackend()"


def check_backend(backend: Any) -> None:
    """Raise ``ValueError`` naming the valid choices if ``backend`` is neither a name nor a backend."""
    if isinstance(backend, str):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not a backend; choose one of {list(BACKENDS)}")
    elif not all(
        callable(getattr(backend, method, None))
        for method in ("forward_cores", "step_cores", "action_distribution", "optimizer")
    ):
        raise ValueError(
            f"backend={backend!r} is neither one of {list(BACKENDS)} nor an object with the methods of "
            "recurrent_rl.nets.backend.Backend"
        )


def resolve_backend(backend: Any, device: th.device | str = "cpu", kernel_threads: int | str | None = None) -> Backend:
    """The backend object for a name (``"auto"`` resolved for ``device``) or a backend object.

    :param kernel_threads: the speed backend's thread setting (``CpuKernels(threads=...)``); None:
        its process default. Ignored by the torch backend and by backend objects.
    """
    check_backend(backend)
    if not isinstance(backend, str):
        return backend
    if backend == "auto":
        backend = "cpu-kernels" if th.device(device).type == "cpu" else "torch"
    if backend == "torch":
        return TorchBackend()
    module, name = _LOCATIONS[backend]
    backend_class: Any = getattr(importlib.import_module(module), name)
    return backend_class() if kernel_threads is None else backend_class(threads=kernel_threads)
