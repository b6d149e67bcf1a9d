"""GRU layers over whole sequences with per-step resets and a hand-written backward pass.

Why: for the small batches of RL (T=32, B=8, H=64) a recurrent core costs what its per-step
operator calls cost, not what its arithmetic costs. On CPU PyTorch runs ``nn.GRU`` through a
generic loop whose autograd graph has about fifteen nodes per step, five times the cost of
oneDNN's fused LSTM. This kernel keeps ``nn.GRU``'s parameters and math (gates r, z, n,
"linear before reset") but records one autograd node per layer: the input projection is one
matmul over all steps, and the time loop, forward and backward, runs in NumPy on the same
memory, whose per-call overhead on tiny arrays is a fraction of torch's. Several GRUs of the
same shape fed the same resets (an actor's and a critic's) run as one stacked kernel, so
the per-step cost is paid once.

Resets are a mask on the carried state (``keep[t] = 0`` zeroes it before step t), so no
cutting into segments is needed. Tensors not on the CPU take ``nn.GRU`` itself (see memory.py).

Shapes: T time, C cores run together, B batch, H hidden.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable


def _sigmoid_(a: np.ndarray) -> np.ndarray:
    """In-place logistic function, as 0.5 * tanh(a / 2) + 0.5 (no overflow for large |a|)."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _np(t: th.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _GRUSequence(th.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, gi: th.Tensor, h0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor, b_hh: th.Tensor
    ) -> th.Tensor:
        # gi (T, C, B, 3H) input projections incl. b_ih; h0 (C, B, H); keep (T, 1, B, 1);
        # w_hh (C, 3H, H); b_hh (C, 1, 3H)
        gi_, h, keep_, b = _np(gi), _np(h0), _np(keep), _np(b_hh)
        T, C, B, H3 = gi_.shape
        H = H3 // 3
        w_t = np.ascontiguousarray(_np(w_hh).transpose(0, 2, 1))  # (C, H, 3H); BLAS is slow on transposed views
        prev = np.empty((T, C, B, H), dtype=gi_.dtype)  # state entering each step, after reset
        gh = np.empty((T, C, B, H3), dtype=gi_.dtype)  # hidden projections
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
    def backward(ctx: Any, grad_out: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
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
        grad_w_hh = np.matmul(
            grad_gh.transpose(1, 3, 0, 2).reshape(C, 3 * H, T * B), prev.transpose(1, 0, 2, 3).reshape(C, T * B, H)
        )  # (C, 3H, H)
        grad_b_hh = grad_gh.sum(axis=(0, 2))[:, None, :]  # (C, 1, 3H)
        return th.from_numpy(grad_gi), th.from_numpy(dh), None, th.from_numpy(grad_w_hh), th.from_numpy(grad_b_hh)


def gru_sequences(
    grus: list[th.nn.GRU], xs: list[th.Tensor], h0s: list[th.Tensor], keep: th.Tensor
) -> list[tuple[th.Tensor, th.Tensor]]:
    """Run GRUs of one shape over their inputs ``xs[c]`` (T, B, F) from ``h0s[c]`` (L, B, H).

    All share the resets: ``keep`` (T, B) is 0 where the state is zeroed before the step.
    Returns, per GRU, the top layer's outputs (T, B, H) and the final state (L, B, H).
    Equals stepping each ``gru`` with its state multiplied by ``keep[t]`` before each step.
    """
    keep4 = keep.to(xs[0].dtype)[:, None, :, None]  # (T, 1, B, 1)
    inputs = list(xs)
    finals: list[list[th.Tensor]] = [[] for _ in grus]
    for layer in range(grus[0].num_layers):
        # one matmul per core for all steps
        gi = th.stack([F.linear(x, getattr(g, f"weight_ih_l{layer}"), getattr(g, f"bias_ih_l{layer}"))
                       for g, x in zip(grus, inputs)], dim=1)  # (T, C, B, 3H)  # fmt: skip
        w_hh = th.stack([getattr(g, f"weight_hh_l{layer}") for g in grus])  # (C, 3H, H)
        b_hh = th.stack([getattr(g, f"bias_hh_l{layer}") for g in grus]).unsqueeze(1)  # (C, 1, 3H)
        h0 = th.stack([h[layer] for h in h0s])  # (C, B, H)
        out = _GRUSequence.apply(gi, h0, keep4, w_hh, b_hh)  # (T, C, B, H)
        inputs = list(out.unbind(1))
        for c, g in enumerate(grus):
            finals[c].append(inputs[c][-1])
            if g.training and g.dropout > 0 and layer < g.num_layers - 1:
                inputs[c] = F.dropout(inputs[c], g.dropout, training=True)
    return [(inputs[c], th.stack(finals[c])) for c in range(len(grus))]


def gru_sequence(gru: th.nn.GRU, x: th.Tensor, h0: th.Tensor, keep: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """One GRU: see :func:`gru_sequences`."""
    return gru_sequences([gru], [x], [h0], keep)[0]
