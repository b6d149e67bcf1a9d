"""``backend="cpu-kernels"``: the CPU speed layer as one backend object.

:class:`CpuKernels` has the methods of :class:`recurrent_rl.nets.backend.Backend`. Each of its
parts applies only where it computes exactly what the torch backend computes, and hands the call
to :class:`~recurrent_rl.nets.backend.TorchBackend` otherwise (non-CPU or float16 tensors,
unsupported modules, hooks):

- ``"memory"``: memory cores through the compiled layers (:mod:`.kernels`, :mod:`.native`; the
  NumPy loops without a compiler), actor and critic stacked in one call per layer; the scan
  memories (mingru, minlstm, and ffm's turned-back trace) with their recurrence as one compiled
  pass in time (``torch.ops.recurrent_rl.scan``) instead of the associative scan;
- ``"optimizer"``: :class:`~.optim.PolicyAdam` in place of SB3's default Adam (:mod:`.optim`);
- ``"distributions"``: :class:`~.distributions.LeanCategorical` inside SB3's (Multi)Categorical
  distributions, and torch's argument validation off for the others (:mod:`.distributions`).

``CpuKernels()`` takes every part; ``CpuKernels(parts=("memory",))`` only some (the core
benchmark measures what each buys).
"""

from __future__ import annotations

from typing import Any, cast

import torch as th
from torch import nn

from recurrent_rl.accel import distributions, kernels, native
from recurrent_rl.accel.optim import PolicyAdam
from recurrent_rl.nets.backend import TorchBackend
from recurrent_rl.nets.ffm import FastForgetfulMemory
from recurrent_rl.nets.memory import MemoryCore, same_shape
from recurrent_rl.nets.scan import MinRNN
from recurrent_rl.types import MemoryState

PARTS = ("memory", "optimizer", "distributions")
# The MLP heads stay in torch (SB3's MlpExtractor): compiled heads gained at most about 5% on the
# core benchmark (AMD Zen 4; nothing measurable on an Intel Xeon) for some 300 lines of C, C++ and
# Python, so the backend has no hook for them.


def sequence_kernel_applies(core: MemoryCore, x: th.Tensor) -> bool:
    """Whether a sequence call of ``core`` on ``x`` runs through the kernels (a CPU float32/64
    batch and a module the kernels implement)."""
    return kernels.supported_module(core.rnn) and kernels.supported_input(x)


def scan_kernel_applies(core: MemoryCore, x: th.Tensor) -> bool:
    """Whether a scan memory's (mingru, minlstm, ffm) sequence call takes the compiled scan
    (float32 on the CPU, the library built)."""
    return (
        isinstance(core.rnn, (MinRNN, FastForgetfulMemory))
        and x.dtype is th.float32
        and x.is_cpu
        and native.available()
    )


def step_kernel_applies(core: MemoryCore, x: th.Tensor) -> bool:
    """Whether one step runs compiled: no gradient needed (rollouts, predict), float32 on the CPU,
    no dropout in training mode, the library built. Every rollout step asks: plain attributes only."""
    return (
        x.dtype is th.float32
        and x.is_cpu
        and not th.is_grad_enabled()
        and not (core.training and core.rnn.dropout > 0)
        and kernels.supported_module(core.rnn)
        and native.available()
    )


class CpuKernels(TorchBackend):
    """The CPU speed layer; see the module docstring."""

    name = "cpu-kernels"

    def __init__(self, parts: tuple[str, ...] | list[str] = PARTS, threads: int | str | None = None):
        """:param parts: the parts of the speed layer to use (:data:`PARTS`)
        :param threads: the compiled memory layers' threads: 1, 2 (the actor's and the critic's
            memories side by side in the update, with torch on one thread) or ``"auto"`` (2 where
            the process may use two CPUs); None: the process default
            (:func:`recurrent_rl.accel.native.kernel_threads`)"""
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown cpu-kernels parts {unknown}; choose from {list(PARTS)}")
        self.threads = None if threads is None else native._valid_threads(threads, "kernel_threads")
        self.parts = frozenset(parts)
        self._memory = "memory" in self.parts
        self._distributions = "distributions" in self.parts

    def __repr__(self) -> str:
        return f"CpuKernels(parts={sorted(self.parts)}, threads={self.threads!r})"

    def forward_cores(
        self,
        cores: list[MemoryCore],
        xs: list[th.Tensor],
        states: list[MemoryState],
        episode_starts: th.Tensor,
        need_final_state: bool = True,
    ) -> list[tuple[th.Tensor, MemoryState | None]]:
        """Cores of one kind and shape as one stacked kernel call per layer (an actor's and a
        critic's memory then cost about as much as one); resets as a mask inside the loops."""
        first = cores[0]
        if self._memory and all(scan_kernel_applies(c, x) for c, x in zip(cores, xs)):
            scan = native.library().scan  # type: ignore[union-attr]
            return [
                cast(MinRNN | FastForgetfulMemory, c.rnn).forward_sequence(
                    x, s, episode_starts, need_final_state, scan=scan
                )
                for c, x, s in zip(cores, xs, states)
            ]
        if self._memory and all(
            sequence_kernel_applies(c, x) and same_shape(c, first) and x.shape == xs[0].shape for c, x in zip(cores, xs)
        ):
            keep = 1.0 - episode_starts.float()
            rnns = [cast(nn.RNNBase, c.rnn) for c in cores]  # sequence_kernel_applies checked each
            return kernels.run_sequences(rnns, xs, states, keep, need_final_state, self.threads)
        if self._memory and len(cores) > 1:
            return [
                self.forward_cores([c], [x], [s], episode_starts, need_final_state)[0]
                for c, x, s in zip(cores, xs, states)
            ]
        return super().forward_cores(cores, xs, states, episode_starts, need_final_state)

    def step_cores(
        self, cores: list[MemoryCore], xs: list[th.Tensor], states: list[MemoryState], episode_start: th.Tensor
    ) -> list[tuple[th.Tensor, MemoryState]]:
        """One compiled call for every layer of all cores when they are of one kind and shape."""
        first = cores[0]
        if self._memory and all(
            step_kernel_applies(c, x) and same_shape(c, first) and x.shape == xs[0].shape for c, x in zip(cores, xs)
        ):
            rnns = [cast(nn.RNNBase, c.rnn) for c in cores]  # step_kernel_applies checked each
            return kernels.step_compiled(rnns, xs, states, 1.0 - episode_start.float())
        if self._memory and len(cores) > 1:
            return [self.step_cores([c], [x], [s], episode_start)[0] for c, x, s in zip(cores, xs, states)]
        return super().step_cores(cores, xs, states, episode_start)

    def action_distribution(self, policy: Any, latent_pi: th.Tensor) -> Any | None:
        if self._distributions:
            return distributions.lean_action_distribution(policy, latent_pi)
        return None

    def optimizer(
        self, optimizer_class: type[th.optim.Optimizer] | None, optimizer_kwargs: dict[str, Any] | None
    ) -> tuple[type[th.optim.Optimizer] | None, dict[str, Any] | None]:
        """SB3's default (Adam, eps 1e-5) with torch's fused kernel (one call per step for all ~16
        parameter tensors); unless Adam was asked for by name, :class:`PolicyAdam` makes the same
        update without torch.optim's per-step bookkeeping. Any other choice is left as it is."""
        if "optimizer" not in self.parts or optimizer_kwargs is not None:
            return optimizer_class, optimizer_kwargs
        if optimizer_class is None:
            return PolicyAdam, {"eps": 1e-5, "fused": True}
        if optimizer_class is th.optim.Adam:
            return optimizer_class, {"eps": 1e-5, "fused": True}
        return optimizer_class, optimizer_kwargs
