"""A GRU layer over a whole sequence with per-step resets and a hand-written backward pass.

Why: for the small batches of RL (T=32, B=8, H=64) a recurrent core costs what its per-step
operator calls cost, not what its arithmetic costs. On CPU PyTorch runs ``nn.GRU`` through a
generic loop whose autograd graph has about fifteen nodes per step, five times the cost of
oneDNN's fused LSTM. This layer keeps ``nn.GRU``'s parameters and math (gates r, z, n, "linear
before reset") but records one autograd node per layer: the input projection is one matmul
over all steps and the time loop, forward and backward, runs in NumPy on views of the same
memory, whose per-call overhead on tiny arrays is a fraction of torch's.

Resets are a mask on the carried state (``keep[t] = 0`` zeroes it before step t), so no
cutting into segments is needed. Tensors not on the CPU take ``nn.GRU`` itself (see memory.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
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
        gi_, h, keep_, w, b = _np(gi), _np(h0), _np(keep), _np(w_hh), _np(b_hh)
        # gi (T, B, 3H) input projections incl. b_ih; h0 (B, H); keep (T, B, 1); w (3H, H)
        T, B, H3 = gi_.shape
        H = H3 // 3
        w_t = w.T  # (H, 3H)
        prev = np.empty((T, B, H), dtype=gi_.dtype)  # state entering each step, after reset
        gh = np.empty((T, B, H3), dtype=gi_.dtype)  # hidden projections
        rz = np.empty((T, B, 2 * H), dtype=gi_.dtype)  # reset and update gates
        cand = np.empty((T, B, H), dtype=gi_.dtype)  # candidate n
        out = np.empty((T, B, H), dtype=gi_.dtype)
        for t in range(T):
            hp = np.multiply(h, keep_[t], out=prev[t])
            g = np.matmul(hp, w_t, out=gh[t])
            g += b
            a = _sigmoid_(np.add(gi_[t, :, : 2 * H], g[:, : 2 * H], out=rz[t]))
            n = np.multiply(a[:, :H], g[:, 2 * H :], out=cand[t])
            n += gi_[t, :, 2 * H :]
            np.tanh(n, out=n)
            h = np.subtract(hp, n, out=out[t])  # h = n + z * (hp - n)
            h *= a[:, H:]
            h += n
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev, gh, rz, cand)
        return th.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        keep_t, w_hh = ctx.saved_tensors
        keep, w = _np(keep_t), _np(w_hh)
        prev, gh, rz, cand = ctx.arrays
        del ctx.arrays
        d_out = _np(grad_out)
        T, B, H = cand.shape
        d_rz = rz * (1 - rz)  # sigmoid' for all steps at once
        d_cand = 1 - cand * cand  # tanh'
        dz_dh = prev - cand  # d h / d z
        grad_gi = np.empty((T, B, 3 * H), dtype=d_out.dtype)  # d pre-activations, input side
        grad_gh = np.empty((T, B, 3 * H), dtype=d_out.dtype)  # same, hidden side (n-part times r)
        dh = np.zeros((B, H), dtype=d_out.dtype)
        for t in range(T - 1, -1, -1):
            dh += d_out[t]  # total gradient wrt h_t
            r, z = rz[t, :, :H], rz[t, :, H:]
            dhp = dh * z  # through the z * hp path
            dan = np.subtract(dh, dhp, out=grad_gi[t, :, 2 * H :])  # through n: (1 - z) ...
            dan *= d_cand[t]  # ... * tanh'
            da_r = np.multiply(dan, gh[t, :, 2 * H :], out=grad_gi[t, :, :H])
            da_r *= d_rz[t, :, :H]
            da_z = np.multiply(dh, dz_dh[t], out=grad_gi[t, :, H : 2 * H])
            da_z *= d_rz[t, :, H:]
            grad_gh[t, :, : 2 * H] = grad_gi[t, :, : 2 * H]
            np.multiply(dan, r, out=grad_gh[t, :, 2 * H :])
            dh = np.matmul(grad_gh[t], w)  # gradient wrt hp ...
            dh += dhp
            dh *= keep[t]  # ... and wrt h_{t-1}
        flat_gh = grad_gh.reshape(T * B, 3 * H)
        grad_w_hh = flat_gh.T @ prev.reshape(T * B, H)  # (3H, H)
        grad_b_hh = flat_gh.sum(0)
        return th.from_numpy(grad_gi), th.from_numpy(dh), None, th.from_numpy(grad_w_hh), th.from_numpy(grad_b_hh)


def gru_sequence(gru: th.nn.GRU, x: th.Tensor, h0: th.Tensor, keep: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Run ``gru``'s layers over ``x`` (T, B, F) from ``h0`` (L, B, H), resetting where ``keep`` (T, B) is 0.

    Returns the top layer's outputs (T, B, H) and the final state (L, B, H). Equals stepping
    ``gru`` with the state multiplied by ``keep[t]`` before each step. CPU float32/float64 only.
    """
    keep = keep.to(x.dtype).unsqueeze(-1)  # (T, B, 1)
    layer_in = x
    finals = []
    for layer in range(gru.num_layers):
        gi = th.nn.functional.linear(
            layer_in, getattr(gru, f"weight_ih_l{layer}"), getattr(gru, f"bias_ih_l{layer}")
        )  # (T, B, 3H), one matmul for all steps
        out = _GRUSequence.apply(
            gi, h0[layer], keep, getattr(gru, f"weight_hh_l{layer}"), getattr(gru, f"bias_hh_l{layer}")
        )
        finals.append(out[-1])
        layer_in = out
        if gru.training and gru.dropout > 0 and layer < gru.num_layers - 1:
            layer_in = th.nn.functional.dropout(out, gru.dropout, training=True)
    return layer_in, th.stack(finals)
