"""Memory cores: GRU, LSTM and Elman RNN behind one interface, and helpers for their states.

A memory *state* is a tuple of tensors, each ``(L, B, H)``: ``(h,)`` for ``gru`` and ``rnn``,
``(h, c)`` for ``lstm``. Code outside this module never looks inside a state: it stores,
indexes, masks and converts states with the helpers below, which work for any core (and for
nested tuples of states, such as a policy's actor and critic states).

Two ways to run a core, one meaning:

- :meth:`MemoryCore.forward` takes a whole ``(T, B, F)`` batch with per-step ``episode_starts``
  and makes one fused cuDNN/ATen call (the batch is cut into episode segments when an episode
  starts after t = 0, see :class:`recurrent_rl.sequences.Segments`);
- :meth:`MemoryCore.step` takes one ``(B, F)`` step, for rollouts and ``predict``.

Plain torch, the same code on every device. The CPU speed layer runs the same cores through its
own compiled layers (:mod:`recurrent_rl.accel`), reached through the policy's backend
(:mod:`recurrent_rl.nets.backend`), never from here.

``episode_starts[t, b] = 1`` means "reset column b to the initial (zero) state before step t".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import torch as th
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recurrent_rl.nets.attention import AttentionMemory
from recurrent_rl.nets.ffm import FastForgetfulMemory
from recurrent_rl.nets.scan import SCAN_MEMORIES, MinRNN, SequenceMemory
from recurrent_rl.sequences import Segments
from recurrent_rl.types import MemoryState, NestedState

# stepped through time
MEMORY_TYPES: dict[str, type[nn.GRU] | type[nn.LSTM] | type[nn.RNN]] = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
# memory name -> the SequenceMemory class that implements it, called as
# cls(memory, input_size, hidden_size, num_layers, dropout, gate_bias, **memory_kwargs)
SEQUENCE_MEMORIES: dict[str, type[SequenceMemory]] = {name: MinRNN for name in SCAN_MEMORIES}
SEQUENCE_MEMORIES["transformer"] = AttentionMemory  # attention over a window of recent steps
SEQUENCE_MEMORIES["ffm"] = FastForgetfulMemory  # decaying complex traces (Fast and Forgetful Memory)
MEMORIES = (*MEMORY_TYPES, *SEQUENCE_MEMORIES)  # every memory="..." a MemoryCore takes
_CELLS: dict[str, Callable[..., Any]] = {"gru": th.gru_cell, "lstm": th.lstm_cell, "rnn": th.rnn_tanh_cell}
_WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class MemoryCore(nn.Module):
    """A memory core of any depth: ``gru``, ``lstm``, ``rnn`` (Elman with tanh), stepped through
    time by torch's modules; ``mingru`` / ``minlstm``, linear recurrences computed over a whole
    chunk with a parallel scan (:mod:`recurrent_rl.nets.scan`); ``ffm``, Fast and Forgetful
    Memory, decaying complex traces also computed with a scan (:mod:`recurrent_rl.nets.ffm`); or
    ``transformer``, attention over a window of recent steps (:mod:`recurrent_rl.nets.attention`).

    :param memory: one of :data:`MEMORIES`
    :param input_size: features per step (F)
    :param hidden_size: units per layer (H)
    :param num_layers: stacked layers (L)
    :param dropout: dropout between stacked layers (training mode only)
    :param memory_kwargs: options of a memory beyond these (the attention memory's window and
        heads, for example); only for memories that take them
    :param gate_bias: added to the initial bias of the gate that keeps the state: GRU's update
        gate z, LSTM's forget gate f (Jozefowicz et al., 2015, use 1 for the LSTM), and the same
        meaning for minGRU / minLSTM (:class:`~recurrent_rl.nets.scan.MinRNN`). Positive values
        make a fresh core remember longer, which helps tasks with long delays. Not available for
        ``rnn``, which has no gates.

    ``self.rnn`` is the torch module that holds the parameters (``nn.GRU`` / ``nn.LSTM`` /
    ``nn.RNN``, :class:`~recurrent_rl.nets.scan.MinRNN`,
    :class:`~recurrent_rl.nets.ffm.FastForgetfulMemory` or
    :class:`~recurrent_rl.nets.attention.AttentionMemory`).
    """

    def __init__(
        self,
        memory: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        gate_bias: float = 0.0,
        memory_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        check_memory_options(memory, hidden_size, num_layers)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.memory = memory
        # SB3 computes some feature sizes as numpy ints, which nn.RNNBase refuses
        self.input_size = input_size = int(input_size)
        self.hidden_size = hidden_size = int(hidden_size)
        self.num_layers = num_layers = int(num_layers)
        self.memory_kwargs = dict(memory_kwargs or {})
        if memory in SEQUENCE_MEMORIES:
            options = SEQUENCE_MEMORIES[memory].options
            unknown = sorted(set(self.memory_kwargs) - set(options))
            if unknown:
                raise ValueError(f"memory={memory!r} takes no memory_kwargs {unknown}; its options are {list(options)}")
            self.rnn: nn.RNNBase | SequenceMemory = SEQUENCE_MEMORIES[memory](
                memory, input_size, hidden_size, num_layers, dropout, gate_bias, **self.memory_kwargs
            )
            return
        if self.memory_kwargs:
            raise ValueError(f"memory={memory!r} takes no memory_kwargs, got {sorted(self.memory_kwargs)}")
        # batch_first=False: every tensor here is (T, B, ...)
        self.rnn = MEMORY_TYPES[memory](input_size, hidden_size, num_layers, dropout=dropout)
        if gate_bias:
            if memory == "rnn":
                raise ValueError("gate_bias needs a gated core (gru or lstm); the Elman rnn has no gates")
            with th.no_grad():
                for layer in range(num_layers):
                    # gates are stacked (r, z, n) for GRU and (i, f, g, o) for LSTM: z and f are the 2nd block
                    getattr(self.rnn, f"bias_ih_l{layer}")[hidden_size : 2 * hidden_size] += gate_bias

    @property
    def n_state_tensors(self) -> int:
        return len(self.state_shapes(1))

    def initial_state(self, batch_size: int, device: th.device | str | None = None) -> MemoryState:
        """The state a column is reset to: zeros, one tensor per entry of :meth:`state_shapes`."""
        device = device if device is not None else next(self.parameters()).device
        return tuple(th.zeros(shape, device=device) for shape in self.state_shapes(batch_size))

    def state_shapes(self, batch_size: int) -> list[tuple[int, int, int]]:
        """The shapes of the state's tensors, each ``(layers, batch, width)``."""
        if isinstance(self.rnn, SequenceMemory):
            return self.rnn.state_shapes(batch_size)
        return [(self.num_layers, batch_size, self.hidden_size)] * (2 if self.memory == "lstm" else 1)

    def state_summary(self, state: Any) -> Any:
        """One vector per column that shows the state, for plots: ``(B, width)`` from a state
        (tensors or the NumPy arrays ``predict`` returns). The top layer's ``h`` for the
        recurrent cores; a sequence memory says itself (the attention memory: its newest entry)."""
        if isinstance(self.rnn, SequenceMemory):
            return self.rnn.state_summary(state)
        return state[0][-1]

    def _call(self, x: th.Tensor | nn.utils.rnn.PackedSequence, state: MemoryState):
        hx = state if self.memory == "lstm" else state[0]
        out, hx = self.rnn(x, hx)
        return out, (tuple(hx) if self.memory == "lstm" else (hx,))

    def step(self, x: th.Tensor, state: MemoryState, episode_start: th.Tensor) -> tuple[th.Tensor, MemoryState]:
        """One step: ``x`` (B, F), ``episode_start`` (B,) -> output (B, H), next state."""
        if isinstance(self.rnn, SequenceMemory):
            return self.rnn.step(x, state, episode_start)
        state = mask_state(state, 1.0 - episode_start.float())
        if self.training and self.rnn.dropout > 0:
            out, state = self._call(x.unsqueeze(0), state)  # (1, B, H), with inter-layer dropout
            return out.squeeze(0), state
        # The cell functions skip nn.RNNBase's per-call checks and oneDNN's primitive setup:
        # 2-4x faster for one step, which is what rollouts and predict() pay for.
        cell = _CELLS[self.memory]
        layer_in, new_state = x, []
        for layer in range(self.num_layers):
            weights = [getattr(self.rnn, f"{name}_l{layer}") for name in _WEIGHT_NAMES]
            hx = tuple(s[layer] for s in state) if self.memory == "lstm" else state[0][layer]
            out = cell(layer_in, hx, *weights)
            new_state.append(out if self.memory == "lstm" else (out,))
            layer_in = out[0] if self.memory == "lstm" else out
        return layer_in, tuple(th.stack(parts) for parts in zip(*new_state))

    def forward(
        self,
        x: th.Tensor,
        state: MemoryState,
        episode_starts: th.Tensor,
        segments: Segments | None = None,
        need_final_state: bool = True,
    ) -> tuple[th.Tensor, MemoryState | None]:
        """A whole batch: ``x`` (T, B, F), ``episode_starts`` (T, B) -> outputs (T, B, H), final state.

        Equals calling :meth:`step` T times. ``segments`` may be passed when several cores share
        the same ``episode_starts``; ``need_final_state=False`` (the PPO update) returns None
        for the state and lets LSTM/RNN take a faster padded path.
        """
        if isinstance(self.rnn, SequenceMemory):
            return self.rnn.forward_sequence(x, state, episode_starts, need_final_state)
        state = mask_state(state, 1.0 - episode_starts[0].float())
        if segments is None:
            segments = Segments.from_episode_starts(episode_starts)
        if not segments.has_inner_resets:
            return self._call(x, state)
        # Cut at episode starts: one padded column per segment; only the first segment of each
        # column inherits the incoming state, the others start from zeros.
        state0 = tuple(
            s.new_zeros(s.shape[0], segments.n_segments, s.shape[2]).index_copy(1, segments.first_segment, s)
            for s in state
        )  # each (L, N, H)
        padded = segments.pad(x)  # (T, N, F)
        if not need_final_state:
            # Padding only follows a segment's last step, so outputs are exact; the final state
            # would include the padding. oneDNN's LSTM runs padded batches ~5x faster than packed.
            out, _ = self._call(padded, state0)
            return segments.unpad(out), None
        packed = pack_padded_sequence(padded, segments.lengths, enforce_sorted=False)
        out_packed, final = self._call(packed, state0)
        out, _ = pad_packed_sequence(out_packed, total_length=segments.n_steps)  # (T, N, H)
        return segments.unpad(out), select_state(final, segments.last_segment)


def forward_cores(
    cores: list[MemoryCore],
    xs: list[th.Tensor],
    states: list[MemoryState],
    episode_starts: th.Tensor,
    need_final_state: bool = True,
) -> list[tuple[th.Tensor, MemoryState | None]]:
    """Run several cores over their own inputs with the same ``episode_starts`` (T, B): the same
    result as calling each core, with the batch cut into episode segments once for all of them
    (and not at all when every core is a sequence memory, which resets inside its own call: the
    cut copies the episode starts to the host)."""
    needs_segments = any(not isinstance(core.rnn, SequenceMemory) for core in cores)
    segments = Segments.from_episode_starts(episode_starts) if needs_segments else None
    return [core(x, s, episode_starts, segments, need_final_state) for core, x, s in zip(cores, xs, states)]


def step_cores(
    cores: list[MemoryCore], xs: list[th.Tensor], states: list[MemoryState], episode_start: th.Tensor
) -> list[tuple[th.Tensor, MemoryState]]:
    """One step of several cores with the same ``episode_start`` (B,), core by core."""
    return [core.step(x, s, episode_start) for core, x, s in zip(cores, xs, states)]


def same_shape(core: MemoryCore, other: MemoryCore) -> bool:
    """Whether two cores are of one kind and size (so a backend may run them stacked)."""
    return (
        core.memory == other.memory
        and core.input_size == other.input_size
        and core.hidden_size == other.hidden_size
        and core.num_layers == other.num_layers
    )


def check_memory_options(memory: str, hidden_size: int, num_layers: int) -> None:
    """Raise ``ValueError`` naming the bad option and its valid values."""
    if memory not in MEMORIES:
        raise ValueError(f"memory={memory!r} is not a memory type; choose one of {list(MEMORIES)}")
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --- state helpers: the only code that knows a state is a (nested) tuple of tensors ---------


StateT = TypeVar("StateT", bound=NestedState)  # the helpers give back the structure they are given


def map_state(fn: Callable[..., th.Tensor], *states: StateT) -> StateT:
    """Apply ``fn`` leaf-wise to one or more states of the same structure."""
    first = states[0]
    if isinstance(first, th.Tensor):
        return cast(StateT, fn(*states))
    items = [map_state(fn, *parts) for parts in zip(*states)]
    return cast(StateT, type(first)._make(items) if hasattr(first, "_make") else tuple(items))


def mask_state(state: StateT, keep: th.Tensor) -> StateT:
    """Multiply every column by ``keep`` (B,): 0 resets a column to the zero state."""
    keep = keep.view(1, -1, 1)
    return map_state(lambda s: s * keep, state)


def select_state(state: StateT, index: th.Tensor | slice | int) -> StateT:
    """Columns ``index`` of a state (batch dim 1)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return map_state(lambda s: s[:, index], state)


def cat_states(states: list[StateT]) -> StateT:
    """Concatenate states along the batch dim."""
    return map_state(lambda *s: th.cat(s, dim=1), *states)


def assign_state(target: NestedState, index: th.Tensor | slice, source: NestedState) -> None:
    """In place: ``target[:, index] = source`` leaf-wise."""

    def _assign(t: th.Tensor, s: th.Tensor) -> th.Tensor:
        t[:, index] = s
        return t

    map_state(_assign, target, source)


def state_to_numpy(state: NestedState) -> NestedState:
    return map_state(lambda s: s.detach().cpu().numpy(), state)


def state_leaves(state: NestedState) -> list[th.Tensor]:
    """The tensors of a state, in a fixed order (for norms and byte counts)."""
    if isinstance(state, th.Tensor):
        return [state]
    return [leaf for part in state for leaf in state_leaves(part)]
