"""Minimal gated recurrences trained with a parallel scan: minGRU and minLSTM.

Feng et al. 2024, "Were RNNs All We Needed?" (arXiv:2410.01201): drop the previous state from
the gates, and a layer's recurrence becomes linear in the state,

    h_t = a_t * h_{t-1} + b_t,   a_t, b_t functions of x_t only,

so a whole ``(T, B, F)`` chunk is a handful of large tensor operations instead of T small steps.

- minGRU: ``z = sigmoid(W_z x)``, ``h~ = act(W_h x)``, ``h_t = (1 - z) h_{t-1} + z h~``;
- minLSTM: ``f = sigmoid(W_f x)``, ``i = sigmoid(W_i x)``, ``h~ = act(W_h x)``, and with the gates
  normalised to ``f' = f / (f + i)``, ``i' = i / (f + i)``: ``h_t = f' h_{t-1} + i' h~``;

with ``g(v) = v + 0.5`` for ``v >= 0`` and ``sigmoid(v)`` below in the paper.

**Three changes from the paper** (options ``candidate``, ``norm``, ``chrono``; the paper's model
is ``candidate="g", norm=False, chrono=None``). With the paper's choices a minGRU learned less
than the GRU, and on RepeatFirst-Medium less than a memoryless policy: ``g`` keeps the state
positive, which only the paper's log-space scan needs (the scan here is not in log space); the
layer's output is its raw state, whose scale drifts with the inputs; and ``nn.Linear``'s zero-mean
gate bias makes a fresh layer keep half its state per step, so the gradient from a step 50 steps
later is ``2^-50`` of what it could be. Here the candidate is ``tanh``, each layer's output goes
through a layer norm, and the keep gate starts with the chrono initialisation (Tallec and
Ollivier 2018): unit j keeps ``1 - 1/tau_j`` of its state per step, ``tau_j`` drawn uniformly
from [1, ``chrono``] (default 256). Measured in docs/memories.md (minGRU).

The chunk is one associative (Hillis-Steele) scan over the pairs ``(a_t, b_t)`` with
``(a, b) . (a', b') = (a a', a' b + b')``: ``ceil(log2 T)`` rounds of a few elementwise
operations over the whole ``(T, B, H)`` tensor. It multiplies numbers in [0, 1] and adds, never
divides, so it is stable in float32 without the paper's log space. An episode start at t makes
``a_t = 0`` (the carried state is zeroed before step t), so the reset happens inside the scan
and is exact: nothing before it reaches a later step, in value or gradient, and no padding is
needed. At T=512, B=8, H=64 (forward + backward, one thread) it takes about half the time of
the log-space scan (``logcumsumexp``), which can only reset by cutting the batch into padded
segments (some 30 times slower with a reset every 50 steps). ``step`` is the O(1) recurrence
(rollouts, ``predict``).

Layers are stacked with a residual connection from the second layer on (``out = norm(h) +
input``), as the paper stacks them; the state is ``(h,)``, each ``(L, B, H)``: the shape of a GRU's.

Shapes: T time, B batch, N segments, F features, H hidden, L layers.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import torch as th
import torch.nn.functional as F
from torch import nn

from recurrent_rl.types import MemoryState

SCAN_MEMORIES = ("mingru", "minlstm")


class SequenceMemory(nn.Module, abc.ABC):
    """A memory module that :class:`~recurrent_rl.nets.memory.MemoryCore` runs through these
    methods instead of torch's ``nn.RNNBase`` interface (the scan cores here, the attention core).

    Its state is a tuple of tensors of the shapes :meth:`state_shapes` gives, each ``(layers,
    batch, width)``, zeros meaning a fresh memory, so the state helpers store, index, mask and
    convert it as any other; multiplying a column by 0 resets it.

    Constructed as ``cls(memory, input_size, hidden_size, num_layers, dropout, gate_bias,
    **memory_kwargs)``, with the keys of ``memory_kwargs`` among :attr:`options`.
    """

    options: tuple[str, ...] = ()  # the memory_kwargs it takes
    dropout: float  # between layers, in training mode only

    @abc.abstractmethod
    def state_shapes(self, batch_size: int) -> list[tuple[int, int, int]]:
        """The shapes of the state's tensors, each ``(layers, batch, width)``."""

    @abc.abstractmethod
    def forward_sequence(
        self, x: th.Tensor, state: MemoryState, episode_starts: th.Tensor, need_final_state: bool = True
    ) -> tuple[th.Tensor, MemoryState | None]:
        """``x`` (T, B, F), ``episode_starts`` (T, B) -> outputs (T, B, H), final state (or None)."""

    def state_summary(self, state: Any) -> Any:
        """One vector per column that shows the state, for plots (default: the first tensor's
        top layer, ``(B, width)``)."""
        return state[0][-1]

    @abc.abstractmethod
    def step(self, x: th.Tensor, state: MemoryState, episode_start: th.Tensor) -> tuple[th.Tensor, MemoryState]:
        """``x`` (B, F), ``episode_start`` (B,) -> output (B, H), next state."""


def g(v: th.Tensor) -> th.Tensor:
    """The candidate's activation: ``v + 0.5`` for ``v >= 0``, ``sigmoid(v)`` below (positive), as
    ``relu(v) + sigmoid(min(v, 0))``: the same values and gradients in four cheap operations
    (``where`` and its backward cost 3x more here)."""
    return F.relu(v) + th.sigmoid(v.clamp(max=0.0))


CANDIDATES: dict[str, Callable[[th.Tensor], th.Tensor]] = {"g": g, "tanh": th.tanh}


def linear_scan(a: th.Tensor, b: th.Tensor, h0: th.Tensor) -> th.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` over dim 0 from ``h0``: ``a``, ``b`` (T, B, H), ``h0`` (B, H)
    -> h (T, B, H), as an associative scan (``ceil(log2 T)`` rounds over the whole tensor)."""
    T, offset = a.shape[0], 1
    while offset < T:
        # combine each step with the one `offset` before it: (a', b') after (a, b) = (a a', a' b + b')
        b = th.cat([b[:offset], a[offset:] * b[:-offset] + b[offset:]])
        a = th.cat([a[:offset], a[offset:] * a[:-offset]])
        offset *= 2
    return b + a * h0.unsqueeze(0)  # a is now prod_{s<=t} a_s


def sequential_scan(a: th.Tensor, b: th.Tensor, h0: th.Tensor, keep: th.Tensor) -> th.Tensor:
    """The same recurrence stepped through time (the reference for tests): ``a``, ``b`` (T, B, H),
    ``h0`` (B, H), ``keep`` (T, B) multiplies the carried state before each step."""
    h, out = h0, []
    for t in range(a.shape[0]):
        h = a[t] * (h * keep[t].unsqueeze(-1)) + b[t]
        out.append(h)
    return th.stack(out)


class MinRNN(SequenceMemory):
    """A stack of minGRU or minLSTM layers (see the module docstring).

    :param kind: ``"mingru"`` or ``"minlstm"``
    :param input_size: F
    :param hidden_size: H
    :param num_layers: L
    :param dropout: dropout between layers (training only)
    :param gate_bias: makes a fresh core keep its state longer: subtracted from the initial bias
        of minGRU's update gate z (which takes in the new value), added to minLSTM's forget gate f
    :param candidate: the candidate's activation: ``"tanh"`` (default; a state of either sign) or
        ``"g"`` (the paper's, positive, needed only by its log-space scan)
    :param norm: a layer norm on each layer's output (default True; the state itself is not
        normalised)
    :param chrono: the longest initial memory horizon T_max in steps (default 256): the keep
        gate's bias starts so that unit j keeps its state for about tau_j steps, tau_j drawn
        uniformly from [1, T_max] (the chrono initialisation of Tallec and Ollivier, 2018,
        "Can recurrent neural networks warp time?"); None: the gate biases of ``nn.Linear``,
        which keep half the state per step
    """

    options = ("candidate", "norm", "chrono")

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        gate_bias: float = 0.0,
        candidate: str = "tanh",
        norm: bool = True,
        chrono: float | None = 256,
    ):
        super().__init__()
        if kind not in SCAN_MEMORIES:
            raise ValueError(f"kind={kind!r} is not a scan memory; choose one of {list(SCAN_MEMORIES)}")
        if candidate not in CANDIDATES:
            raise ValueError(f"candidate={candidate!r} is not a candidate activation; choose one of {list(CANDIDATES)}")
        if not isinstance(norm, bool):
            raise ValueError(f"norm must be True or False, got {norm!r}")
        if chrono is not None and (isinstance(chrono, bool) or not isinstance(chrono, (int, float)) or chrono < 2):
            raise ValueError(f"chrono must be null or the longest initial horizon in steps (>= 2), got {chrono!r}")
        self.kind, self.input_size, self.hidden_size, self.num_layers = kind, input_size, hidden_size, num_layers
        self.dropout, self.candidate, self.norm, self.chrono = dropout, candidate, norm, chrono
        n_gates = 2 if kind == "mingru" else 3  # (z, h~) or (f, i, h~)
        linears = [
            nn.Linear(input_size if layer == 0 else hidden_size, n_gates * hidden_size) for layer in range(num_layers)
        ]
        with th.no_grad():
            for linear in linears:
                keep = linear.bias[:hidden_size]  # z (mingru: how much of the new value enters) or f (minlstm: stays)
                if chrono is not None:
                    # keep a fraction 1 - 1/tau per step: minGRU z = sigmoid(-log(tau - 1)) = 1/tau;
                    # minLSTM f' = f / (f + i) with f = sigmoid(log(tau - 1)) = 1 - 1/tau and
                    # i = sigmoid(-log(tau - 1)) = 1/tau, so f' = 1 - 1/tau too
                    tau = th.empty(hidden_size).uniform_(1.0, float(chrono)).clamp(min=1.0 + 1e-3)
                    log_tau = th.log(tau - 1.0)
                    keep.copy_(-log_tau if kind == "mingru" else log_tau)
                    if kind == "minlstm":
                        linear.bias[hidden_size : 2 * hidden_size] = -log_tau
                if gate_bias:
                    keep += -gate_bias if kind == "mingru" else gate_bias
        self.layers = nn.ModuleList(linears)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers)) if norm else None

    def state_shapes(self, batch_size: int) -> list[tuple[int, int, int]]:
        return [(self.num_layers, batch_size, self.hidden_size)]

    def _coefficients(self, layer: int, x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(a, b) of the recurrence ``h = a h_prev + b`` for inputs ``x`` (..., F)."""
        H = self.hidden_size
        pre = self.layers[layer](x)  # (..., G*H)
        activation = CANDIDATES[self.candidate]
        if self.kind == "mingru":
            k_z, k_h = pre[..., :H], pre[..., H:]
            z = th.sigmoid(k_z)
            return 1.0 - z, z * activation(k_h)
        k_f, k_i, k_h = pre[..., :H], pre[..., H : 2 * H], pre[..., 2 * H :]
        # f' = f / (f + i) = sigmoid(log f - log i), with log sigmoid(k) = -softplus(-k)
        f = th.sigmoid(F.softplus(-k_i) - F.softplus(-k_f))
        return f, (1.0 - f) * activation(k_h)

    def _between_layers(self, out: th.Tensor, layer_in: th.Tensor, layer: int) -> th.Tensor:
        if self.norms is not None:
            out = self.norms[layer](out)
        if layer > 0:
            out = out + layer_in  # residual from the second layer on
        if self.training and self.dropout > 0 and layer < self.num_layers - 1:
            out = F.dropout(out, self.dropout, training=True)
        return out

    def forward_sequence(
        self,
        x: th.Tensor,
        state: MemoryState,
        episode_starts: th.Tensor,
        need_final_state: bool = True,
        scan: Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor] = linear_scan,
    ) -> tuple[th.Tensor, MemoryState | None]:
        """``x`` (T, B, F), ``state`` ``(h,)`` (L, B, H), ``episode_starts`` (T, B) -> outputs
        (T, B, H) and the final state: equal to :meth:`step` T times. ``scan`` computes the
        recurrence (:func:`linear_scan`'s contract; a speed backend may pass a compiled one)."""
        (h0,) = state
        keep = (1.0 - episode_starts.to(h0.dtype)).unsqueeze(-1)  # (T, B, 1): 0 zeroes the carried state
        layer_in, finals = x, []
        for layer in range(self.num_layers):
            a, b = self._coefficients(layer, layer_in)  # (T, B, H)
            h = scan(a * keep, b, h0[layer])
            finals.append(h[-1])
            layer_in = self._between_layers(h, layer_in, layer)
        return layer_in, ((th.stack(finals),) if need_final_state else None)

    def step(self, x: th.Tensor, state: MemoryState, episode_start: th.Tensor) -> tuple[th.Tensor, MemoryState]:
        """One step: ``x`` (B, F), ``episode_start`` (B,) -> output (B, H), next state ``(h,)``."""
        (h_prev,) = state
        h_prev = h_prev * (1.0 - episode_start.to(h_prev.dtype)).view(1, -1, 1)
        layer_in, new = x, []
        for layer in range(self.num_layers):
            a, b = self._coefficients(layer, layer_in)
            h = a * h_prev[layer] + b
            new.append(h)
            layer_in = self._between_layers(h, layer_in, layer)
        return layer_in, (th.stack(new),)
