"""Attention over a window of recent steps: a GTrXL-style memory, ``memory="transformer"``.

Each layer is causal multi-head self-attention followed by a position-wise MLP, with the layer
norm on the input of each sub-block only (pre-LN, "TrXL-I" of Parisotto et al. 2019,
"Stabilizing Transformers for Reinforcement Learning", arXiv:1910.06764) and, with
``gated=True``, the residual connections replaced by GRU-type gates: their Gated Transformer-XL.
The input is projected F -> H first; the last layer's output goes through a layer norm.

Gating is off by default: on the memory tasks (RepeatPrevious-k2 and -k16, RepeatFirst-Easy,
with the presets' PPO settings) gated layers learnt no better than plain ones, and somewhat worse
with the GTrXL gate bias on RepeatPrevious-k16, while costing 1.3-1.7x the time.

**Window.** Every step attends to itself and to the ``memory_length`` (M) steps before it, as
long as they belong to its episode: M + 1 keys at most. The keys of layer l are computed from
that layer's *inputs* at those steps, so, as in Transformer-XL, information can travel further
through depth: at most ``num_layers * M`` steps back, and never across an episode start.

**State.** A fixed-size cache of the last M inputs of every layer, with a validity mask:

- ``cache``: ``(L, B, M*H)``, layer l's inputs at the last M steps, oldest first, each ``(H,)``;
- ``valid``: ``(1, B, M)``, 1 where the cached step belongs to the current episode.

Zeros are a fresh memory (nothing valid), so the state helpers of
:mod:`recurrent_rl.nets.memory` store, index and reset it like any other state; entries that are
not valid are kept at zero, so equal memories are equal tensors. The cache never grows: a step
shifts its own inputs in and the oldest out.

**Masks.** A step sees a key when (1) the key is at distance 0..M back, (2) both lie in the same
episode (an episode start inside a chunk cuts it; cached steps are visible only while valid and
no reset came since), so nothing before a reset reaches a later step, in value or in gradient
(masked scores are -inf: probability exactly 0). A step always sees itself.

**Positions.** Relative, by distance back from the query (0 = itself, ..., M): a learned vector
per distance and layer is added to the keys inside the score (Shaw et al. 2018,
arXiv:1803.02155, ``e = q . (k + a_d) / sqrt(d_head)``), so one step and a whole chunk see
identical positions.

**Two ways to run it, one result:** :meth:`AttentionMemory.step` (rollouts, ``predict``: O(M)
per step) and :meth:`AttentionMemory.forward_sequence` (the update: a whole ``(T, B, F)``
chunk at once, its queries in blocks of ``W = min(T, max(M, 16))`` steps, each block scoring
the ``M + W`` keys that can reach it).

Shapes: T time, B batch, F features, H hidden, L layers, M window, N heads, D head width,
K blocks, W block length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn

from recurrent_rl.nets.scan import SequenceMemory
from recurrent_rl.types import MemoryState

ATTENTION_MEMORIES = ("transformer",)
GTRXL_GATE_BIAS = 2.0  # b_g of the gates; RLlib's GTrXL default (attention_init_gru_gate_bias)
MIN_BLOCK = 16  # shortest query block of forward_sequence (fewer, larger matmuls for small M)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (1, 2, ...), got {value!r}")
    return int(value)


class GruGate(nn.Module):
    """GTrXL's GRU-type gate ``g(x, y)`` for the residual stream ``x`` and a sub-block's output ``y``:

    ``r = sigmoid(W_r y + U_r x)``, ``z = sigmoid(W_z y + U_z x - b_g)``,
    ``h = tanh(W_g y + U_g (r * x))``, ``g = (1 - z) * x + z * h``.

    With ``b_g > 0`` a fresh gate passes ``x`` on nearly unchanged (identity at the start). As in
    GTrXL, the layer feeds it ``y = relu(sub-block output)``.
    """

    def __init__(self, hidden_size: int, b_g: float):
        super().__init__()
        H = hidden_size
        self.from_y = nn.Linear(H, 3 * H)  # (r, z, g) blocks
        self.from_x = nn.Linear(H, 2 * H, bias=False)  # (r, z)
        self.from_rx = nn.Linear(H, H, bias=False)  # g
        with th.no_grad():
            self.from_y.bias[H : 2 * H] -= b_g  # z's bias starts at -b_g (plus nn.Linear's init)

    def forward(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        H = x.shape[-1]
        wy = self.from_y(y)  # (..., 3H)
        ux = self.from_x(x)  # (..., 2H)
        r = th.sigmoid(wy[..., :H] + ux[..., :H])
        z = th.sigmoid(wy[..., H : 2 * H] + ux[..., H:])
        h = th.tanh(wy[..., 2 * H :] + self.from_rx(r * x))
        return (1.0 - z) * x + z * h


class AttentionLayer(nn.Module):
    """One pre-LN transformer layer over (window keys, queries); gated or plain residuals."""

    def __init__(self, hidden_size: int, n_heads: int, memory_length: int, ff_size: int, gated: bool, b_g: float):
        super().__init__()
        H = hidden_size
        self.n_heads, self.head_size = n_heads, H // n_heads
        self.norm_attention = nn.LayerNorm(H)
        self.query = nn.Linear(H, H)
        self.key_value = nn.Linear(H, 2 * H)
        self.out = nn.Linear(H, H)
        # a_d for d = 0 (the query itself) .. M, split into heads like the keys
        self.relative_keys = nn.Parameter(th.randn(memory_length + 1, H) * 0.02)  # (M+1, H)
        self.norm_ff = nn.LayerNorm(H)
        self.ff = nn.Sequential(nn.Linear(H, ff_size), nn.ReLU(), nn.Linear(ff_size, H))
        self.gated = gated
        if gated:
            self.gate_attention = GruGate(H, b_g)
            self.gate_ff = GruGate(H, b_g)

    def finish(self, x: th.Tensor, attended: th.Tensor) -> th.Tensor:
        """From the residual stream ``x`` and the heads' output ``attended`` (both (..., H)) to
        the layer's output: output projection, residual/gate, MLP, residual/gate."""
        y = self.out(attended)
        x = self.gate_attention(x, F.relu(y)) if self.gated else x + y
        f = self.ff(self.norm_ff(x))
        return self.gate_ff(x, F.relu(f)) if self.gated else x + f


class AttentionMemory(SequenceMemory):
    """A stack of GTrXL-style layers over a window of the last ``memory_length`` steps (see the
    module docstring).

    :param kind: ``"transformer"``
    :param input_size: F (projected to H by a linear layer)
    :param hidden_size: H, the width of every layer; ``n_heads`` must divide it
    :param num_layers: L
    :param dropout: dropout on each layer's output before the next layer (training only)
    :param gate_bias: added to ``b_g``, the bias that keeps the gates near identity at the start
        (``z = sigmoid(... - b_g)``, ``b_g = 2 + gate_bias``): positive values make a fresh layer
        pass its input on more unchanged, negative ones let the sub-blocks in sooner (gate_bias=-2,
        b_g = 0, solved RepeatPrevious-k16 in 40k steps on seeds 0 and 1, as the plain layers
        did). Needs ``gated=True``.
    :param memory_length: M, how many steps before the current one each step sees (default 32)
    :param n_heads: attention heads (default: the largest of 4, 2, 1 dividing ``hidden_size``)
    :param gated: GRU-type gates instead of residual additions (GTrXL; default False, see the
        module docstring)
    :param ff_size: width of the position-wise MLP (default ``2 * hidden_size``)
    """

    options = ("memory_length", "n_heads", "gated", "ff_size")

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        gate_bias: float = 0.0,
        memory_length: int = 32,
        n_heads: int | None = None,
        gated: bool = False,
        ff_size: int | None = None,
    ):
        super().__init__()
        if kind not in ATTENTION_MEMORIES:
            raise ValueError(f"kind={kind!r} is not an attention memory; choose one of {list(ATTENTION_MEMORIES)}")
        H = hidden_size
        self.memory_length = _positive_int("memory_length", memory_length)
        if n_heads is None:
            n_heads = next(n for n in (4, 2, 1) if H % n == 0)
        n_heads = _positive_int("n_heads", n_heads)
        if H % n_heads:
            divisors = [d for d in range(1, H + 1) if H % d == 0]
            raise ValueError(f"n_heads={n_heads} does not divide hidden_size={H}; choose n_heads among {divisors}")
        if not isinstance(gated, (bool, np.bool_)):
            raise ValueError(f"gated must be True or False, got {gated!r}")
        if gate_bias and not gated:
            raise ValueError(
                f"gate_bias={gate_bias} sets the initial bias of the GRU-type gates, which need gated=True; "
                "use gated=True or gate_bias=0"
            )
        self.ff_size = _positive_int("ff_size", 2 * H if ff_size is None else ff_size)
        self.kind, self.input_size, self.hidden_size, self.num_layers = kind, input_size, H, num_layers
        self.n_heads, self.gated, self.dropout = n_heads, bool(gated), dropout
        self.input_projection = nn.Linear(input_size, H)
        self.layers = nn.ModuleList(
            AttentionLayer(H, n_heads, self.memory_length, self.ff_size, self.gated, GTRXL_GATE_BIAS + gate_bias)
            for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(H)

    def state_summary(self, state: Any) -> Any:
        """The top layer's newest cache entry (its input at the last step), ``(B, H)``."""
        return state[0][-1][:, -self.hidden_size :]

    def state_shapes(self, batch_size: int) -> list[tuple[int, int, int]]:
        M, H = self.memory_length, self.hidden_size
        return [(self.num_layers, batch_size, M * H), (1, batch_size, M)]

    def _attention_layers(self) -> Sequence[AttentionLayer]:
        return cast("Sequence[AttentionLayer]", self.layers)  # nn.ModuleList is typed as holding Modules

    def _between_layers(self, out: th.Tensor, layer: int) -> th.Tensor:
        if self.training and self.dropout > 0 and layer < self.num_layers - 1:
            out = F.dropout(out, self.dropout, training=True)
        return out

    # --- one step -----------------------------------------------------------------------------

    def step(self, x: th.Tensor, state: MemoryState, episode_start: th.Tensor) -> tuple[th.Tensor, MemoryState]:
        """One step: ``x`` (B, F), ``episode_start`` (B,) -> output (B, H), next ``(cache, valid)``."""
        cache, valid = state
        L, B, M, H = self.num_layers, x.shape[0], self.memory_length, self.hidden_size
        keep = (episode_start == 0).view(B, 1)  # (B, 1)
        seen = (valid[0] > 0.5) & keep  # (B, M) cached steps of this episode
        allowed = th.cat([seen, seen.new_ones(B, 1)], dim=1)  # (B, M+1): the cache, then itself
        memory = cache.view(L, B, M, H)
        layer_in, new_cache = self.input_projection(x), []  # (B, H)
        for index, layer in enumerate(self._attention_layers()):
            N, D = layer.n_heads, layer.head_size
            window = th.cat([memory[index], layer_in.unsqueeze(1)], dim=1)  # (B, M+1, H), oldest first
            normed = layer.norm_attention(window)
            q = layer.query(normed[:, -1]).view(B, N, D)
            k, v = layer.key_value(normed).view(B, M + 1, 2, N, D).unbind(2)  # each (B, M+1, N, D)
            # window slot j is at distance M - j: the relative keys read backwards
            rel = layer.relative_keys.flip(0).view(M + 1, N, D)
            scores = th.einsum("bnd,bjnd->bnj", q, k + rel) / math.sqrt(D)  # (B, N, M+1)
            scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
            attended = th.einsum("bnj,bjnd->bnd", th.softmax(scores, dim=-1), v).reshape(B, H)
            out = layer.finish(layer_in, attended)
            new_cache.append(window[:, 1:])  # (B, M, H): shift in this step's input
            layer_in = self._between_layers(out, index)
        new_valid = th.cat([seen[:, 1:], seen.new_ones(B, 1)], dim=1).to(cache.dtype)  # (B, M)
        stacked = th.stack(new_cache) * new_valid.view(1, B, M, 1)  # (L, B, M, H), invalid kept at zero
        return self.norm_out(layer_in), (stacked.view(L, B, M * H), new_valid.unsqueeze(0))

    # --- a whole chunk --------------------------------------------------------------------------

    def forward_sequence(
        self, x: th.Tensor, state: MemoryState, episode_starts: th.Tensor, need_final_state: bool = True
    ) -> tuple[th.Tensor, MemoryState | None]:
        """``x`` (T, B, F), ``state`` ``(cache, valid)``, ``episode_starts`` (T, B) -> outputs
        (T, B, H) and the final state: equal to :meth:`step` T times."""
        cache, valid = state
        T, B = x.shape[:2]
        L, M, H = self.num_layers, self.memory_length, self.hidden_size
        W = min(T, max(M, MIN_BLOCK))
        K = -(-T // W)  # blocks
        pad = K * W - T
        device = x.device

        # Episode ids over the keys [cache (M); chunk (T); padding]: a chunk step's id counts the
        # episode starts up to it; cached steps carry id 0 while valid (and so reach the chunk's
        # first episode only if it is not a new one), -1 otherwise; padding continues the last
        # episode (never seen by a real step: it lies in the future).
        chunk_ids = th.cumsum((episode_starts != 0).long(), dim=0).t()  # (B, T)
        cache_ids = th.where(valid[0] > 0.5, 0, -1)  # (B, M)
        key_ids = th.cat([cache_ids, chunk_ids, chunk_ids[:, -1:].expand(B, pad)], dim=1)  # (B, M+K*W)
        query_ids = key_ids[:, M:].view(B, K, W)  # (B, K, W)
        block_keys = key_ids.unfold(1, M + W, W)  # (B, K, M+W): block k sees keys [kW, kW+M+W)
        # in a block, query i sits at key M + i: key j is at distance M + i - j
        distance = M + th.arange(W, device=device).view(W, 1) - th.arange(M + W, device=device).view(1, M + W)
        in_window = (distance >= 0) & (distance <= M)  # (W, M+W)
        allowed = in_window & (block_keys.unsqueeze(2) == query_ids.unsqueeze(3))  # (B, K, W, M+W)
        allowed = allowed.unsqueeze(1)  # (B, 1, K, W, M+W): the same for every head
        position = distance.clamp(0, M).expand(B, 1, K, W, M + W)

        memory = cache.view(L, B, M, H).transpose(1, 2)  # (L, M, B, H)
        layer_in = self.input_projection(x)  # (T, B, H)
        windows = []
        for index, layer in enumerate(self._attention_layers()):
            N, D = layer.n_heads, layer.head_size
            keys_in = th.cat([memory[index], layer_in, layer_in.new_zeros(pad, B, H)])  # (M+K*W, B, H)
            windows.append(keys_in[T : T + M])  # the last M inputs (M, B, H), for the final state
            normed = layer.norm_attention(keys_in)
            q = layer.query(normed[M:])  # (K*W, B, H)
            q = q.view(K, W, B, N, D).permute(2, 3, 0, 1, 4)  # (B, N, K, W, D)
            kv = layer.key_value(normed).view(M + K * W, B, 2, N, D)
            k, v = kv.permute(2, 1, 3, 0, 4).unbind(0)  # (B, N, M+K*W, D)
            k_blocks = k.unfold(2, M + W, W)  # (B, N, K, D, M+W)
            v_blocks = v.unfold(2, M + W, W)  # (B, N, K, D, M+W)
            rel = layer.relative_keys.view(M + 1, N, D).permute(1, 2, 0)  # (N, D, M+1)
            by_distance = th.matmul(q, rel.unsqueeze(1))  # (B, N, K, W, M+1): q . a_d
            scores = th.matmul(q, k_blocks) + by_distance.gather(-1, position.expand(B, N, K, W, M + W))
            scores = (scores / math.sqrt(D)).masked_fill(~allowed, float("-inf"))  # (B, N, K, W, M+W)
            attended = th.matmul(th.softmax(scores, dim=-1), v_blocks.transpose(-1, -2))  # (B, N, K, W, D)
            attended = attended.permute(2, 3, 0, 1, 4).reshape(K * W, B, H)[:T]  # (T, B, H)
            out = layer.finish(layer_in, attended)
            layer_in = self._between_layers(out, index)
        output = self.norm_out(layer_in)
        if not need_final_state:
            return output, None
        # valid after the chunk: the last M keys that belong to the last step's episode
        final_valid = (key_ids[:, T : T + M] == chunk_ids[:, -1:]).to(cache.dtype)  # (B, M)
        stacked = th.stack(windows).transpose(1, 2) * final_valid.view(1, B, M, 1)  # (L, B, M, H)
        return output, (stacked.reshape(L, B, M * H), final_valid.unsqueeze(0))
