"""Fast and Forgetful Memory: ``memory="ffm"``.

Morad, Kortvelesy, Liwicki and Prorok, "Reinforcement Learning with Fast and Forgetful Memory",
NeurIPS 2023 (arXiv:2310.04128). A layer keeps a complex-valued trace ``S`` of ``m`` channels by
``c`` context slots. Each step writes a gated projection of its input into every slot and every
slot decays and turns at its own rate:

    u_t = (W_v x_t) * sigmoid(W_i x_t)                                     (m,)   input gate
    S_t = gamma * S_{t-1} + u_t 1_c^T,  gamma = exp(-|alpha|) exp(i omega)   (m, c)
    z_t = LayerNorm(W_z [Re S_t, Im S_t])                                    (H,)   no affine
    y_t = z_t * sigmoid(W_o x_t) + (W_s x_t) * (1 - sigmoid(W_o x_t))        (H,)   output gate

``alpha`` (m,) sets how fast each channel forgets and ``omega`` (c,) how fast each slot turns, so
the trace holds the recent inputs weighted by their age: a slot's phase tells how long ago
something came in, its magnitude how much of it is left. Both are learned. The recurrence is
linear in ``S`` and its decay does not depend on the input, so a whole chunk is one associative
scan and one step is O(1).

**Initialisation.** Channel ``j`` starts forgetting an input down to 1% after ``p_j`` steps
(``|alpha_j| = ln(100) / p_j``), and slot ``k`` turns once every ``q_k`` steps (``omega_k =
2 pi / q_k``), with ``p`` and ``q`` spaced geometrically between ``min_period`` and
``max_period`` (default 1 and 1024): every octave of delays has channels and slots of its own.
(The authors' code spaces ``alpha`` linearly, which leaves two of 32 channels with a horizon
beyond 100 steps; the geometric spacing keeps eleven there, which the long-delay tasks need.)

**State.** ``(L, B, 2 m c)`` real: the real parts of ``S`` (channel-major), then the imaginary
parts. Zeros are a fresh memory, so the state helpers store, index and reset it like any other.

**The scan.** ``S_t = gamma keep_t S_{t-1} + u_t`` with ``keep_t = 0`` at an episode start.
Turned back by its age, ``S'_t = S_t e^{-i omega t}``, the trace decays by the real ``r =
exp(-|alpha|)`` only: ``S'_t = r keep_t S'_{t-1} + u_t e^{-i omega t}``, two real linear
recurrences (real and imaginary parts) computed by the same scan as minGRU's
(:func:`recurrent_rl.nets.scan.linear_scan`, ``ceil(log2 T)`` rounds; on the CPU the speed backend
passes its compiled pass in time), then turned forward again. It multiplies and adds numbers of
magnitude at most 1, never divides (the paper's cumulative-sum form divides by ``gamma^t`` and must
cut long chunks to avoid overflow). The reset happens inside the scan: nothing before an episode
start reaches a later step, in value or gradient.

Shapes: T time, B batch, F features, H hidden (the output), L layers, m channels, c slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn

from recurrent_rl.nets.scan import SequenceMemory, linear_scan
from recurrent_rl.types import MemoryState

FFM_MEMORIES = ("ffm",)
FORGOTTEN_AT = 0.01  # a channel of period p keeps this fraction of an input after p steps


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (1, 2, ...), got {value!r}")
    return int(value)


class FFMLayer(nn.Module):
    """One FFM layer (see the module docstring): ``F`` inputs -> ``H`` outputs, trace ``(m, c)``."""

    def __init__(
        self, input_size: int, hidden_size: int, memory_size: int, context_size: int, periods: tuple[float, float]
    ):
        super().__init__()
        self.hidden_size, self.memory_size, self.context_size = hidden_size, memory_size, context_size
        m, H = memory_size, hidden_size
        # (value m, input gate m, output gate H, skip H) in one matrix
        self.pre = nn.Linear(input_size, 2 * m + 2 * H)
        self.mix = nn.Linear(2 * m * context_size, H)
        low, high = periods
        forget = th.tensor(np.geomspace(low, high, m), dtype=th.float32)  # (m,) steps to 1%
        turn = th.tensor(np.geomspace(low, high, context_size), dtype=th.float32)  # (c,) steps per turn
        self.alpha = nn.Parameter(math.log(1.0 / FORGOTTEN_AT) / forget)  # decay rate |alpha|
        self.omega = nn.Parameter(2.0 * math.pi / turn)

    def gamma_power(self, n: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``gamma^n`` for step counts ``n`` (N,): real and imaginary parts, each (N, m, c)."""
        n = n.to(self.alpha.dtype).view(-1, 1, 1)
        magnitude = th.exp(-n * self.alpha.abs().view(1, -1, 1))  # (N, m, 1)
        angle = n * self.omega.view(1, 1, -1)  # (N, 1, c)
        return magnitude * th.cos(angle), magnitude * th.sin(angle)

    def inputs(self, x: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """``x`` (..., F) -> the gated write ``u`` (..., m), output gate (..., H), skip (..., H)."""
        m, H = self.memory_size, self.hidden_size
        value, gate_in, gate_out, skip = self.pre(x).split([m, m, H, H], dim=-1)
        return value * th.sigmoid(gate_in), th.sigmoid(gate_out), skip

    def output(self, re: th.Tensor, im: th.Tensor, gate_out: th.Tensor, skip: th.Tensor) -> th.Tensor:
        """The trace ``(..., m, c)`` twice -> the layer's output (..., H)."""
        flat = th.cat([re.flatten(-2), im.flatten(-2)], dim=-1)  # (..., 2mc)
        z = F.layer_norm(self.mix(flat), (self.hidden_size,))
        return z * gate_out + skip * (1.0 - gate_out)


def decay_scan(
    layer: FFMLayer,
    u: th.Tensor,
    keep: th.Tensor,
    h0_re: th.Tensor,
    h0_im: th.Tensor,
    scan: Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor] = linear_scan,
) -> tuple[th.Tensor, th.Tensor]:
    """``S_t = gamma keep_t S_{t-1} + u_t`` over a chunk: ``u`` (T, B, m), ``keep`` (T, B) (0 at an
    episode start), ``h0_*`` (B, m, c) -> ``S`` as (re, im), each (T, B, m, c).

    With ``gamma = r e^{i omega}``, the trace turned back by its age, ``S'_t = S_t e^{-i omega t}``,
    follows a recurrence with a *real* decay, ``S'_t = r keep_t S'_{t-1} + u_t e^{-i omega t}``:
    its real and imaginary parts are two real linear recurrences, which ``scan`` computes
    (:func:`recurrent_rl.nets.scan.linear_scan`'s contract; a speed backend passes its compiled
    pass in time). The angles ``omega t`` are reduced modulo 2 pi in float64 first, so long chunks
    keep their phase to float32 precision.
    """
    T = u.shape[0]
    r = th.exp(-layer.alpha.abs())  # (m,)
    t = th.arange(T, device=u.device, dtype=th.float64).view(T, 1)
    angle = th.remainder(layer.omega.to(th.float64).view(1, -1) * t, 2.0 * math.pi).to(u.dtype)  # (T, c)
    cos, sin = th.cos(angle).view(T, 1, 1, -1), th.sin(angle).view(T, 1, 1, -1)  # (T, 1, 1, c)
    w = u.unsqueeze(-1)  # (T, B, m, 1)
    b = th.cat([w * cos, -w * sin], dim=-1)  # (T, B, m, 2c): u e^{-i omega t}, real then imaginary
    a = (keep.view(*keep.shape, 1, 1) * r.view(1, 1, -1, 1)).expand_as(b)  # (T, B, m, 2c)
    # S'_{-1} = S_{-1} e^{i omega}
    c1, s1 = th.cos(layer.omega), th.sin(layer.omega)  # (c,)
    h0 = th.cat([h0_re * c1 - h0_im * s1, h0_re * s1 + h0_im * c1], dim=-1)  # (B, m, 2c)
    turned = scan(a.contiguous(), b, h0)  # (T, B, m, 2c)
    p_re, p_im = turned.chunk(2, dim=-1)
    return p_re * cos - p_im * sin, p_re * sin + p_im * cos  # S_t = S'_t e^{i omega t}


class FastForgetfulMemory(SequenceMemory):
    """A stack of FFM layers (see the module docstring).

    :param kind: ``"ffm"``
    :param input_size: F
    :param hidden_size: H, each layer's output width
    :param num_layers: L
    :param dropout: dropout between layers (training only)
    :param gate_bias: must be 0: FFM has no gate that keeps its state (its decays are set by
        ``min_period`` / ``max_period``)
    :param memory_size: m, the trace's channels (default ``max(1, hidden_size // 4)``: 32 for the
        paper's width of 128)
    :param context_size: c, the trace's slots per channel (default 4, the paper's)
    :param min_period: the shortest initial horizon and turn period, in steps (default 1)
    :param max_period: the longest (default 1024)
    """

    options = ("memory_size", "context_size", "min_period", "max_period")

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        gate_bias: float = 0.0,
        memory_size: int | None = None,
        context_size: int = 4,
        min_period: float = 1.0,
        max_period: float = 1024.0,
    ):
        super().__init__()
        if kind not in FFM_MEMORIES:
            raise ValueError(f"kind={kind!r} is not a forgetful memory; choose one of {list(FFM_MEMORIES)}")
        if gate_bias:
            raise ValueError(
                f"gate_bias={gate_bias}: ffm has no gate that keeps its state (its forgetting is set by "
                "memory_kwargs min_period and max_period); use gate_bias=0 (or null in a config)"
            )
        m = _positive_int("memory_size", max(1, hidden_size // 4) if memory_size is None else memory_size)
        c = _positive_int("context_size", context_size)
        for name, value in (("min_period", min_period), ("max_period", max_period)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 1:
                raise ValueError(f"{name} must be a number of steps >= 1, got {value!r}")
        if max_period < min_period:
            raise ValueError(f"max_period={max_period} is below min_period={min_period}")
        self.kind, self.input_size, self.hidden_size, self.num_layers = kind, input_size, hidden_size, num_layers
        self.memory_size, self.context_size, self.dropout = m, c, dropout
        self.periods = (float(min_period), float(max_period))
        self.layers = nn.ModuleList(
            FFMLayer(input_size if layer == 0 else hidden_size, hidden_size, m, c, self.periods)
            for layer in range(num_layers)
        )

    def state_shapes(self, batch_size: int) -> list[tuple[int, int, int]]:
        return [(self.num_layers, batch_size, 2 * self.memory_size * self.context_size)]

    def _split(self, s: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """A layer's state (..., 2mc) -> (re, im), each (..., m, c)."""
        m, c = self.memory_size, self.context_size
        re, im = s.split(m * c, dim=-1)
        return re.unflatten(-1, (m, c)), im.unflatten(-1, (m, c))

    def _between_layers(self, out: th.Tensor, layer: int) -> th.Tensor:
        if self.training and self.dropout > 0 and layer < self.num_layers - 1:
            out = F.dropout(out, self.dropout, training=True)
        return out

    def step(self, x: th.Tensor, state: MemoryState, episode_start: th.Tensor) -> tuple[th.Tensor, MemoryState]:
        """One step: ``x`` (B, F), ``episode_start`` (B,) -> output (B, H), next state (L, B, 2mc)."""
        (s,) = state
        s = s * (1.0 - episode_start.to(s.dtype)).view(1, -1, 1)
        one = th.ones(1, device=x.device)
        layer_in, new = x, []
        for index, layer in enumerate(self.layers):
            assert isinstance(layer, FFMLayer)
            u, gate_out, skip = layer.inputs(layer_in)  # (B, m), (B, H), (B, H)
            re, im = self._split(s[index])  # (B, m, c)
            g_re, g_im = layer.gamma_power(one)  # (1, m, c)
            re, im = g_re * re - g_im * im + u.unsqueeze(-1), g_re * im + g_im * re
            new.append(th.cat([re.flatten(-2), im.flatten(-2)], dim=-1))
            layer_in = self._between_layers(layer.output(re, im, gate_out, skip), index)
        return layer_in, (th.stack(new),)

    def forward_sequence(
        self,
        x: th.Tensor,
        state: MemoryState,
        episode_starts: th.Tensor,
        need_final_state: bool = True,
        scan: Callable[[th.Tensor, th.Tensor, th.Tensor], th.Tensor] = linear_scan,
    ) -> tuple[th.Tensor, MemoryState | None]:
        """``x`` (T, B, F), ``state`` (L, B, 2mc), ``episode_starts`` (T, B) -> outputs (T, B, H)
        and the final state: equal to :meth:`step` T times. ``scan`` computes the real linear
        recurrences of :func:`decay_scan` (a speed backend may pass a compiled one)."""
        (s,) = state
        keep = 1.0 - episode_starts.to(s.dtype)  # (T, B)
        layer_in, finals = x, []
        for index, layer in enumerate(self.layers):
            assert isinstance(layer, FFMLayer)
            u, gate_out, skip = layer.inputs(layer_in)  # (T, B, m), (T, B, H), (T, B, H)
            h0_re, h0_im = self._split(s[index])  # (B, m, c)
            re, im = decay_scan(layer, u, keep, h0_re, h0_im, scan)  # (T, B, m, c)
            finals.append(th.cat([re[-1].flatten(-2), im[-1].flatten(-2)], dim=-1))
            layer_in = self._between_layers(layer.output(re, im, gate_out, skip), index)
        return layer_in, ((th.stack(finals),) if need_final_state else None)
