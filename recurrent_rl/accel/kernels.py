"""CPU sequence kernels: GRU, LSTM and Elman RNN layers over whole sequences, with per-step resets.

:func:`run_sequences` is the entry point: float32 batches go to the compiled layers of
:mod:`recurrent_rl.accel.native` (one C call per layer for all cores) when the library is built;
float64 batches, and every batch on a machine without a C compiler, run the NumPy loops below.

Why kernels at all: for the small batches of RL (T=32, B=8, H=64) a recurrent core costs what
its per-step operator calls cost, not what its arithmetic costs. On CPU PyTorch runs ``nn.GRU``
through a generic loop whose autograd graph has about fifteen nodes per step; ``nn.LSTM`` goes
through oneDNN, which is fast but cannot reset the state in the middle of a sequence, so batches
with episode starts must be cut and padded first. These kernels keep the torch modules'
parameters and math but record one autograd node per layer: the input projection is one matmul
over all steps, and the time loop, forward and backward (written out by hand), runs in NumPy on
the same memory, whose per-call overhead on tiny arrays is a fraction of torch's. Several cores
of the same kind and shape fed the same resets (an actor's and a critic's memory) run stacked in
one loop, so the per-step cost is paid once.

Resets are a mask on the carried state (``keep[t] = 0`` zeroes it before step t). The loops run
with NumPy's BLAS limited to one thread: on matrices this small, OpenBLAS threads only spin
against each other and against torch (5-30x slower when the cores are busy).

Shapes: T time, C cores run together, B batch, H hidden, G gates * H.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from recurrent_rl.accel import native, torch_private

_F = TypeVar("_F", bound=Callable[..., Any])


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # scans the loaded libraries once

    return ThreadpoolController()


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with NumPy's BLAS on one thread (restored afterwards)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """In-place logistic function, as 0.5 * tanh(a / 2) + 0.5 (no overflow for large |a|)."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _np(t: th.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _transposed(w: th.Tensor) -> np.ndarray:
    """(C, G, H) -> contiguous (C, H, G): BLAS is several times slower on a transposed view."""
    return np.ascontiguousarray(_np(w).transpose(0, 2, 1))


def _weight_grad(grad_pre: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """sum over T, B of grad_pre^T prev: (T, C, B, G), (T, C, B, H) -> (C, G, H)."""
    T, C, B, G = grad_pre.shape
    return np.matmul(
        grad_pre.transpose(1, 3, 0, 2).reshape(C, G, T * B), prev.transpose(1, 0, 2, 3).reshape(C, T * B, -1)
    )


class _GRU(th.autograd.Function):
    """gi (T, C, B, 3H) = x W_ih^T + b_ih; h0 (C, B, H); keep (T, 1, B, 1); w_hh (C, 3H, H); b_hh (C, 1, 3H)."""

    @staticmethod
    @_one_blas_thread
    def forward(ctx: Any, gi: th.Tensor, h0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor, b_hh: th.Tensor) -> th.Tensor:
        gi_, h, keep_, w_t, b = _np(gi), _np(h0), _np(keep), _transposed(w_hh), _np(b_hh)
        T, C, B, G = gi_.shape
        H = G // 3
        prev = np.empty((T, C, B, H), dtype=gi_.dtype)  # state entering each step, after reset
        gh = np.empty((T, C, B, G), dtype=gi_.dtype)  # hidden projections
        rz = np.empty((T, C, B, 2 * H), dtype=gi_.dtype)  # reset and update gates
        cand = np.empty((T, C, B, H), dtype=gi_.dtype)  # candidate n
        out = np.empty((T, C, B, H), dtype=gi_.dtype)
        for t in range(T):
            hp = np.multiply(h, keep_[t], out=prev[t])
            g = np.matmul(hp, w_t, out=gh[t])
            g += b
            a = _sigmoid_(np.add(gi_[t, ..., : 2 * H], g[..., : 2 * H], out=rz[t]))
            n = np.multiply(a[..., :H], g[..., 2 * H :], out=cand[t])
            n += gi_[t, ..., 2 * H :]
            np.tanh(n, out=n)
            h = np.subtract(hp, n, out=out[t])  # h = n + z * (hp - n)
            h *= a[..., H:]
            h += n
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev, gh, rz, cand)
        return th.from_numpy(out)

    @staticmethod
    @once_differentiable
    @_one_blas_thread
    def backward(ctx: Any, grad_out: th.Tensor) -> tuple[th.Tensor | None, ...]:
        keep_t, w_hh = ctx.saved_tensors
        keep, w = _np(keep_t), _np(w_hh)  # w (C, 3H, H)
        prev, gh, rz, cand = ctx.arrays
        del ctx.arrays
        d_out = _np(grad_out)
        T, C, B, H = cand.shape
        r, z = rz[..., :H], rz[..., H:]
        # Everything that does not depend on the incoming gradient, for all steps at once, so
        # the loop is left with one multiply per gate and one matmul.
        through_n = (1 - z) * (1 - cand * cand)  # dh -> d(n pre-activation)
        to_r = through_n * gh[..., 2 * H :] * r * (1 - r)  # dh -> d(r pre-activation)
        to_z = (prev - cand) * z * (1 - z)  # dh -> d(z pre-activation)
        to_hn = through_n * r  # dh -> d(W_hn h + b_hn)
        grad_gh = np.empty((T, C, B, 3 * H), dtype=d_out.dtype)  # d(hidden projections)
        grad_h = np.empty((T, C, B, H), dtype=d_out.dtype)  # total gradient wrt each output h_t
        dh = np.zeros((C, B, H), dtype=d_out.dtype)
        for t in range(T - 1, -1, -1):
            dh = np.add(dh, d_out[t], out=grad_h[t])
            np.multiply(dh, to_r[t], out=grad_gh[t, ..., :H])
            np.multiply(dh, to_z[t], out=grad_gh[t, ..., H : 2 * H])
            np.multiply(dh, to_hn[t], out=grad_gh[t, ..., 2 * H :])
            through_hp = dh * z[t]
            dh = np.matmul(grad_gh[t], w)  # d hp
            dh += through_hp
            dh *= keep[t]  # d h_{t-1}
        grad_gi = grad_gh.copy()
        np.multiply(grad_h, through_n, out=grad_gi[..., 2 * H :])
        grad_b_hh = grad_gh.sum(axis=(0, 2))[:, None, :]  # (C, 1, 3H)
        return (
            th.from_numpy(grad_gi),
            th.from_numpy(dh),
            None,
            th.from_numpy(_weight_grad(grad_gh, prev)),
            th.from_numpy(grad_b_hh),
        )


def _swap_go(a: np.ndarray, h: int) -> np.ndarray:
    """Swap the last two gate blocks: torch's (i, f, g, o) <-> (i, f, o, g), which puts the three
    sigmoid gates side by side. The swap is its own inverse."""
    return np.concatenate([a[..., : 2 * h], a[..., 3 * h :], a[..., 2 * h : 3 * h]], axis=-1)


class _LSTM(th.autograd.Function):
    """gx (T, C, B, 4H) = x W_ih^T + b_ih + b_hh; h0, c0 (C, B, H); keep (T, 1, B, 1);
    w_hh (C, 4H, H). Gates in torch's order (i, f, g, o). Returns outputs h and the last c."""

    @staticmethod
    @_one_blas_thread
    def forward(
        ctx: Any, gx: th.Tensor, h0: th.Tensor, c0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        T, C, B, G = gx.shape
        H = G // 4
        gx_, h, c, keep_ = _swap_go(_np(gx), H), _np(h0), _np(c0), _np(keep)
        w_t = np.ascontiguousarray(_swap_go(_np(w_hh).transpose(0, 2, 1), H))  # (C, H, 4H)
        prev_h = np.empty((T, C, B, H), dtype=gx_.dtype)
        prev_c = np.empty((T, C, B, H), dtype=gx_.dtype)
        acts = np.empty((T, C, B, G), dtype=gx_.dtype)  # activated gates i, f, o (sigmoid), g (tanh)
        cells = np.empty((T + 1, C, B, H), dtype=gx_.dtype)  # cells[t + 1] = c after step t
        tanh_c = np.empty((T, C, B, H), dtype=gx_.dtype)
        out = np.empty((T, C, B, H), dtype=gx_.dtype)
        for t in range(T):
            hp = np.multiply(h, keep_[t], out=prev_h[t])
            cp = np.multiply(c, keep_[t], out=prev_c[t])
            a = np.matmul(hp, w_t, out=acts[t])
            a += gx_[t]
            _sigmoid_(a[..., : 3 * H])
            np.tanh(a[..., 3 * H :], out=a[..., 3 * H :])
            c = np.multiply(a[..., H : 2 * H], cp, out=cells[t + 1])  # f * c
            c += a[..., :H] * a[..., 3 * H :]  # + i * g
            tc = np.tanh(c, out=tanh_c[t])
            h = np.multiply(a[..., 2 * H : 3 * H], tc, out=out[t])  # o * tanh(c)
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev_h, prev_c, acts, tanh_c)
        return th.from_numpy(out), th.from_numpy(cells[T])

    @staticmethod
    @once_differentiable
    @_one_blas_thread
    def backward(ctx: Any, grad_out: th.Tensor, grad_c_last: th.Tensor) -> tuple[th.Tensor | None, ...]:
        keep_t, w_hh = ctx.saved_tensors
        prev_h, prev_c, acts, tanh_c = ctx.arrays
        del ctx.arrays
        T, C, B, H = tanh_c.shape
        keep = _np(keep_t)
        w = np.ascontiguousarray(_swap_go(_np(w_hh).transpose(0, 2, 1), H).transpose(0, 2, 1))  # (C, 4H, H), i f o g
        d_out = _np(grad_out)
        i, f, o, g = acts[..., :H], acts[..., H : 2 * H], acts[..., 2 * H : 3 * H], acts[..., 3 * H :]
        # factors independent of the incoming gradient, for all steps at once
        to_o = tanh_c * o * (1 - o)  # dh -> d(o pre-activation)
        to_c = o * (1 - tanh_c * tanh_c)  # dh -> dc
        to_i = g * i * (1 - i)  # dc -> d(i pre-activation)
        to_f = prev_c * f * (1 - f)  # dc -> d(f pre-activation)
        to_g = i * (1 - g * g)  # dc -> d(g pre-activation)
        to_prev_c = f * keep  # dc -> d c_{t-1}
        grad_pre = np.empty((T, C, B, 4 * H), dtype=d_out.dtype)
        dh = np.zeros((C, B, H), dtype=d_out.dtype)
        dc = _np(grad_c_last).copy()
        for t in range(T - 1, -1, -1):
            dh += d_out[t]
            np.multiply(dh, to_o[t], out=grad_pre[t, ..., 2 * H : 3 * H])
            dh *= to_c[t]
            dc += dh
            np.multiply(dc, to_i[t], out=grad_pre[t, ..., :H])
            np.multiply(dc, to_f[t], out=grad_pre[t, ..., H : 2 * H])
            np.multiply(dc, to_g[t], out=grad_pre[t, ..., 3 * H :])
            dc *= to_prev_c[t]
            dh = np.matmul(grad_pre[t], w)
            dh *= keep[t]
        grad_w = _swap_go(_weight_grad(grad_pre, prev_h).transpose(0, 2, 1), H).transpose(0, 2, 1)
        return (
            th.from_numpy(_swap_go(grad_pre, H)),
            th.from_numpy(dh),
            th.from_numpy(dc),
            None,
            th.from_numpy(np.ascontiguousarray(grad_w)),
        )


class _RNN(th.autograd.Function):
    """gx (T, C, B, H) = x W_ih^T + b_ih + b_hh; h0 (C, B, H); keep (T, 1, B, 1); w_hh (C, H, H)."""

    @staticmethod
    @_one_blas_thread
    def forward(ctx: Any, gx: th.Tensor, h0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor) -> th.Tensor:
        gx_, h, keep_, w_t = _np(gx), _np(h0), _np(keep), _transposed(w_hh)
        T = gx_.shape[0]
        prev = np.empty_like(gx_)
        out = np.empty_like(gx_)
        for t in range(T):
            hp = np.multiply(h, keep_[t], out=prev[t])
            h = np.matmul(hp, w_t, out=out[t])
            h += gx_[t]
            np.tanh(h, out=h)
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev, out)
        return th.from_numpy(out)

    @staticmethod
    @once_differentiable
    @_one_blas_thread
    def backward(ctx: Any, grad_out: th.Tensor) -> tuple[th.Tensor | None, ...]:
        keep_t, w_hh = ctx.saved_tensors
        keep, w = _np(keep_t), _np(w_hh)
        prev, out = ctx.arrays
        del ctx.arrays
        d_out = _np(grad_out)
        T = d_out.shape[0]
        d_tanh = 1 - out * out
        grad_pre = np.empty_like(d_out)
        dh = np.zeros_like(d_out[0])
        for t in range(T - 1, -1, -1):
            dh += d_out[t]
            da = np.multiply(dh, d_tanh[t], out=grad_pre[t])
            dh = np.matmul(da, w)
            dh *= keep[t]
        return th.from_numpy(grad_pre), th.from_numpy(dh), None, th.from_numpy(_weight_grad(grad_pre, prev))


def run_sequences(
    rnns: list[nn.RNNBase],
    xs: list[th.Tensor],
    states: list[tuple[th.Tensor, ...]],
    keep: th.Tensor,
    need_final_state: bool = True,
    threads: int | str | None = None,
) -> list[tuple[th.Tensor, tuple[th.Tensor, ...] | None]]:
    """Run torch RNN modules of one kind and shape, each on its own input, with shared resets.

    :param rnns: ``nn.GRU``, ``nn.LSTM`` or ``nn.RNN`` (tanh) modules, all of the same kind,
        sizes and depth, unidirectional, with biases
    :param xs: inputs (T, B, F), one per module
    :param states: initial states, one per module: ``(h,)`` or ``(h, c)``, each (L, B, H)
    :param keep: (T, B), 0 where the state is zeroed before the step
    :param need_final_state: False returns None for the final states (the PPO update)
    :param threads: the compiled layers' threads (1, 2, ``"auto"``; None: the process default)
    :return: per module, the top layer's outputs (T, B, H) and the final state
    Equals stepping each module with its state multiplied by ``keep[t]`` before each step.
    """
    if xs[0].dtype == th.float32 and native.available():
        return _run_compiled(rnns, xs, states, keep.float(), need_final_state, threads)
    keep4 = keep.to(xs[0].dtype)[:, None, :, None]  # (T, 1, B, 1)
    inputs = list(xs)
    finals: list[list[tuple[th.Tensor, ...]]] = [[] for _ in rnns]
    for layer in range(rnns[0].num_layers):
        h0 = th.stack([s[0][layer] for s in states])  # (C, B, H)
        w_hh = _stacked(rnns, "weight_hh", layer)
        kind = _kind(rnns[0])
        if kind == "gru":  # b_hh stays apart: r multiplies W_hn h + b_hn
            b_hh = _stacked(rnns, "bias_hh", layer).unsqueeze(1)
            out = _GRU.apply(_projections(rnns, inputs, layer, False), h0, keep4, w_hh, b_hh)
            last: tuple[th.Tensor, ...] = (out[-1],)
        elif kind == "lstm":
            c0 = th.stack([s[1][layer] for s in states])
            out, c_last = _LSTM.apply(_projections(rnns, inputs, layer, True), h0, c0, keep4, w_hh)
            last = (out[-1], c_last)
        else:
            out = _RNN.apply(_projections(rnns, inputs, layer, True), h0, keep4, w_hh)
            last = (out[-1],)
        inputs = list(out.unbind(1))  # (T, B, H) per core
        for c, m in enumerate(rnns):
            finals[c].append(tuple(s[c] for s in last))
            if m.training and m.dropout > 0 and layer < m.num_layers - 1:
                inputs[c] = F.dropout(inputs[c], m.dropout, training=True)
    if not need_final_state:
        return [(inputs[c], None) for c in range(len(rnns))]
    return [(inputs[c], tuple(th.stack(parts) for parts in zip(*finals[c]))) for c in range(len(rnns))]


def _stacked(rnns: list[nn.RNNBase], name: str, layer: int) -> th.Tensor:
    """The parameter ``{name}_l{layer}`` of every core, stacked: (C, ...)."""
    return th.stack([getattr(m, f"{name}_l{layer}") for m in rnns])


def _projections(rnns: list[nn.RNNBase], inputs: list[th.Tensor], layer: int, with_b_hh: bool) -> th.Tensor:
    """x W_ih^T + b_ih (+ b_hh) of every core for all steps, (T, C, B, G): one matmul per core."""
    parts = []
    for m, x in zip(rnns, inputs):
        bias = getattr(m, f"bias_ih_l{layer}")
        if with_b_hh:
            bias = bias + getattr(m, f"bias_hh_l{layer}")
        parts.append(F.linear(x, getattr(m, f"weight_ih_l{layer}"), bias))
    return th.stack(parts, dim=1)


def _kind(rnn: nn.RNNBase) -> str:
    return "gru" if isinstance(rnn, nn.GRU) else "lstm" if isinstance(rnn, nn.LSTM) else "rnn"


def _run_compiled(
    rnns: list[nn.RNNBase],
    xs: list[th.Tensor],
    states: list[tuple[th.Tensor, ...]],
    keep: th.Tensor,
    need_final_state: bool = True,
    threads: int | str | None = None,
) -> list[tuple[th.Tensor, tuple[th.Tensor, ...] | None]]:
    """:func:`run_sequences` through the compiled layers: one autograd node per layer, all cores."""
    kind, n = _kind(rnns[0]), len(rnns)
    inputs = list(xs)  # the operator makes inputs and states contiguous where they are not
    finals: list[list[tuple[th.Tensor, ...]]] = [[] for _ in rnns]
    flat = [torch_private.flat_weights(m) for m in rnns]  # per layer w_ih, w_hh, b_ih, b_hh; one lookup, not 4 getattr
    for layer in range(rnns[0].num_layers):
        i = 4 * layer
        weights = [fw[i + j] for j in (0, 2, 1, 3) for fw in flat]  # every core's w_ih, then b_ih, w_hh, b_hh
        h0s = [s[0][layer] for s in states]
        c0s = [s[1][layer] for s in states] if kind == "lstm" else None
        results = native.layer(kind, keep, inputs, weights, h0s, c0s, threads)
        inputs = list(results[:n])
        for c, m in enumerate(rnns):
            if need_final_state:
                finals[c].append((inputs[c][-1], results[n + c]) if kind == "lstm" else (inputs[c][-1],))
            if m.training and m.dropout > 0 and layer < m.num_layers - 1:
                inputs[c] = F.dropout(inputs[c], m.dropout, training=True)
    if not need_final_state:
        return [(inputs[c], None) for c in range(n)]
    return [(inputs[c], tuple(th.stack(parts) for parts in zip(*finals[c]))) for c in range(n)]


def step_compiled(
    rnns: list[nn.RNNBase], xs: list[th.Tensor], states: list[tuple[th.Tensor, ...]], keep: th.Tensor
) -> list[tuple[th.Tensor, tuple[th.Tensor, ...]]]:
    """One step of each module, no autograd (rollouts, predict): ``xs`` (B, F) per module, ``keep``
    (B,); returns per module the output (B, H) and the next state. Needs float32 and the
    compiled library (:func:`recurrent_rl.accel.native.available`).

    Every rollout step pays this path: one operator call for every layer of every module
    (:func:`recurrent_rl.accel.native.step`).
    """
    kind, L = _kind(rnns[0]), rnns[0].num_layers
    flat = [torch_private.flat_weights(m) for m in rnns]  # per layer w_ih, w_hh, b_ih, b_hh; one lookup, not 4 getattr
    weights = [fw[4 * layer + j] for layer in range(L) for j in (0, 2, 1, 3) for fw in flat]
    lstm = kind == "lstm"
    outs, hs, cs = native.step(
        kind, keep, xs, weights, [s[0] for s in states], [s[1] for s in states] if lstm else None
    )
    if lstm:
        return [(out, (h, c)) for out, h, c in zip(outs, hs, cs)]  # type: ignore[arg-type]
    return [(out, (h,)) for out, h in zip(outs, hs)]


def supported_module(rnn: nn.Module) -> bool:
    """Whether :func:`run_sequences` handles this module (any CPU float input)."""
    if not isinstance(rnn, (nn.GRU, nn.LSTM, nn.RNN)) or (isinstance(rnn, nn.RNN) and rnn.nonlinearity != "tanh"):
        return False
    return rnn.bias and not rnn.bidirectional and getattr(rnn, "proj_size", 0) == 0


def supported_input(x: th.Tensor) -> bool:
    """Whether :func:`run_sequences` handles this input (a CPU float32 or float64 tensor)."""
    return x.is_cpu and x.dtype in (th.float32, th.float64)
