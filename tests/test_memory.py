"""Memory cores: sequence = steps (resets included), no leakage across resets, fast GRU = nn.GRU."""

import numpy as np
import pytest
import torch as th

from recurrent_rl.accel.backend import CpuKernels
from recurrent_rl.accel.kernels import run_sequences
from recurrent_rl.nets.backend import TorchBackend
from recurrent_rl.nets.memory import MemoryCore, cat_states, mask_state, select_state, state_leaves

BACKENDS = {True: CpuKernels(), False: TorchBackend()}  # use_kernels -> the backend that runs the cores


def run(core: MemoryCore, x, state, starts, need_final_state: bool = True, use_kernels: bool = True):
    """One core over a (T, B, F) batch through the speed backend (kernels) or plain torch (segments)."""
    return BACKENDS[use_kernels].forward_cores([core], [x], [state], starts, need_final_state)[0]


from recurrent_rl.sequences import Segments, check_sequence_sizes, chunk_rows

CORES = ["gru", "lstm", "rnn", "mingru", "minlstm", "ffm"]


def random_batch(core: MemoryCore, T: int = 24, B: int = 6, p_reset: float = 0.15, seed: int = 0):
    g = th.Generator().manual_seed(seed)
    x = th.randn(T, B, core.input_size, generator=g)
    starts = (th.rand(T, B, generator=g) < p_reset).float()
    state = tuple(th.randn(s.shape, generator=g) for s in core.initial_state(B))
    return x, starts, state


def step_through(core: MemoryCore, x, state, starts):
    outs = []
    for t in range(x.shape[0]):
        out, state = core.step(x[t], state, starts[t])
        outs.append(out)
    return th.stack(outs), state


@pytest.mark.parametrize("memory", CORES)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernels", "segments"])
def test_sequence_equals_steps_with_resets(memory, num_layers, use_kernels):
    th.manual_seed(1)
    core = MemoryCore(memory, input_size=5, hidden_size=12, num_layers=num_layers)
    x, starts, state = random_batch(core)
    assert starts[1:].sum() > 0, "the batch must contain resets after t = 0"
    out, final = run(core, x, state, starts, use_kernels=use_kernels)
    ref_out, ref_final = step_through(core, x, state, starts)
    th.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    for a, b in zip(final, ref_final):
        th.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the update's path (no final state) gives the same outputs
    fast_out, _ = run(core, x, state, starts, need_final_state=False, use_kernels=use_kernels)
    th.testing.assert_close(fast_out, ref_out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("memory", CORES)
@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernels", "segments"])
def test_nothing_crosses_a_reset(memory, use_kernels):
    th.manual_seed(2)
    core = MemoryCore(memory, input_size=4, hidden_size=8, num_layers=2)
    x, starts, state = random_batch(core, T=16, B=3, p_reset=0.0)
    starts[7, 1] = 1.0  # column 1 starts a new episode at t = 7
    out, _ = run(core, x, state, starts, use_kernels=use_kernels)
    # change everything column 1 saw before the reset: inputs and incoming state
    x2 = x.clone()
    x2[:7, 1] = th.randn(7, 4) * 5
    state2 = tuple(s.clone() for s in state)
    for s in state2:
        s[:, 1] = 3.0
    out2, _ = run(core, x2, state2, starts, use_kernels=use_kernels)
    th.testing.assert_close(out2[7:, 1], out[7:, 1], atol=0, rtol=0)
    assert not th.allclose(out2[:7, 1], out[:7, 1])
    # and the reset equals starting fresh from the zero state at t = 7
    fresh, _ = run(core, x[7:, 1:2], core.initial_state(1), th.zeros(9, 1), use_kernels=use_kernels)
    th.testing.assert_close(out[7:, 1:2], fresh, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [th.double, th.float], ids=["float64-numpy", "float32-compiled"])
@pytest.mark.parametrize("module", [th.nn.GRU, th.nn.LSTM, th.nn.RNN])
def test_kernel_gradients_equal_torch_modules(module, dtype):
    """Both kernel paths (NumPy for float64, the compiled C loops for float32) against stepping
    torch's own modules: outputs, final states and the gradients of every input and weight."""
    th.manual_seed(3)
    T, B, F, H, L = 12, 4, 3, 7, 2
    rnn = module(F, H, L).to(dtype)
    x = th.randn(T, B, F, dtype=dtype, requires_grad=True)
    h0 = tuple(th.randn(L, B, H, dtype=dtype, requires_grad=True) for _ in range(2 if module is th.nn.LSTM else 1))
    keep = (th.rand(T, B) > 0.25).to(dtype)

    def reference(x, h0):
        h, outs = h0, []
        for t in range(T):
            h = tuple(s * keep[t].view(1, B, 1) for s in h)
            out, h = rnn(x[t : t + 1], h if module is th.nn.LSTM else h[0])
            h = h if module is th.nn.LSTM else (h,)
            outs.append(out[0])
        return th.stack(outs), h

    [(out, final)] = run_sequences([rnn], [x], [h0], keep)
    ref_out, ref_final = reference(x, h0)
    w_out, w_final = th.randn_like(out), [th.randn_like(f) for f in final]
    params = [x, *h0, *rnn.parameters()]

    def loss(out, final):
        return (out * w_out).sum() + sum((f * w).sum() for f, w in zip(final, w_final))

    grads = th.autograd.grad(loss(out, final), params)
    ref_grads = th.autograd.grad(loss(ref_out, ref_final), params)
    th.testing.assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads):
        th.testing.assert_close(g, r)


def test_state_helpers_work_for_every_core():
    for memory in CORES:
        core = MemoryCore(memory, 3, 5, num_layers=2)
        state = core.initial_state(4)
        assert len(state) == core.n_state_tensors
        width = 2 * 1 * 4 if memory == "ffm" else 5  # ffm: real and imaginary parts of (5 // 4) x 4 traces
        assert all(s.shape == (2, 4, width) for s in state_leaves(state))
        ones = tuple(th.ones_like(s) for s in state)
        masked = mask_state(ones, th.tensor([1.0, 0.0, 1.0, 0.0]))
        assert all(s[:, [1, 3]].abs().sum() == 0 and s[:, [0, 2]].min() == 1 for s in masked)
        both = cat_states([select_state(ones, 0), select_state(masked, slice(1, 2))])
        assert all(s.shape == (2, 2, width) and s[:, 1].abs().sum() == 0 for s in both)


def test_bad_memory_options_are_named():
    with pytest.raises(ValueError, match="memory='lsmt'.*gru"):
        MemoryCore("lsmt", 3, 4)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        MemoryCore("gru", 3, 0)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        MemoryCore("gru", 3, 4, num_layers=1.5)


def test_segments_by_hand():
    # T = 4, B = 2; column 0 resets at t = 2, column 1 never
    starts = th.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    seg = Segments.from_episode_starts(starts)
    assert seg.lengths.tolist() == [2, 2, 4]
    assert seg.first_segment.tolist() == [0, 2] and seg.last_segment.tolist() == [1, 2]
    x = th.arange(8.0).view(4, 2, 1)  # x[t, b] = 2t + b
    padded = seg.pad(x)
    assert padded[:, :, 0].t().tolist() == [[0, 2, 0, 0], [4, 6, 0, 0], [1, 3, 5, 7]]
    th.testing.assert_close(seg.unpad(padded), x)


def test_chunk_rows_order():
    # rollout of S = 4 steps for E = 2 envs, values 10 * step + env
    rollout = np.array([[10 * s + e for e in range(2)] for s in range(4)])
    chunks = chunk_rows(rollout, 2)  # (T=2, K*E=4)
    assert chunks.T.tolist() == [[0, 10], [1, 11], [20, 30], [21, 31]]


def test_sequence_sizes_name_the_fix():
    check_sequence_sizes(n_steps=32, n_envs=8, batch_size=256, sequence_length=16)
    with pytest.raises(ValueError, match="sequence_length=5 does not divide n_steps=32"):
        check_sequence_sizes(32, 8, 256, 5)
    with pytest.raises(ValueError, match="batch_size=100 is not a multiple of sequence_length=16"):
        check_sequence_sizes(32, 8, 100, 16)
    with pytest.raises(ValueError, match="batch_size=96 does not divide the rollout size"):
        check_sequence_sizes(32, 8, 96, 16)


@pytest.mark.parametrize("memory", CORES)
def test_cores_run_together_equal_cores_run_alone(memory):
    # alone: the torch modules on episode segments; together: one stacked CPU kernel
    """forward_cores (a stacked kernel for GRUs) = each core on its own, outputs and gradients."""
    th.manual_seed(4)
    cores = [MemoryCore(memory, 4, 9, num_layers=2).double() for _ in range(2)]
    T, B = 10, 3
    xs = [th.randn(T, B, 4, dtype=th.double, requires_grad=True) for _ in cores]
    states = [tuple(th.randn(s.shape, dtype=th.double) for s in c.initial_state(B)) for c in cores]
    starts = (th.rand(T, B) < 0.2).double()
    together = BACKENDS[True].forward_cores(cores, xs, states, starts)
    alone = [run(core, x, s, starts, use_kernels=False) for core, x, s in zip(cores, xs, states)]
    weights = [th.randn_like(out) for out, _ in alone]
    params = [*xs, *(p for c in cores for p in c.parameters())]
    g_together = th.autograd.grad(sum((o * w).sum() for (o, _), w in zip(together, weights)), params)
    g_alone = th.autograd.grad(sum((o * w).sum() for (o, _), w in zip(alone, weights)), params)
    for (o1, f1), (o2, f2) in zip(together, alone):
        th.testing.assert_close(o1, o2)
        for a, b in zip(f1, f2):
            th.testing.assert_close(a, b)
    for a, b in zip(g_together, g_alone):
        th.testing.assert_close(a, b)


def test_gate_bias_opens_the_keep_gate():
    th.manual_seed(5)
    plain = MemoryCore("gru", 3, 4, num_layers=2)
    th.manual_seed(5)
    biased = MemoryCore("gru", 3, 4, num_layers=2, gate_bias=2.0)
    for layer in range(2):
        diff = getattr(biased.rnn, f"bias_ih_l{layer}") - getattr(plain.rnn, f"bias_ih_l{layer}")
        th.testing.assert_close(diff, th.tensor([0.0] * 4 + [2.0] * 4 + [0.0] * 4))  # (r, z, n): only z moves
    th.manual_seed(5)
    lstm = MemoryCore("lstm", 3, 4, gate_bias=1.0)
    th.manual_seed(5)
    diff = lstm.rnn.bias_ih_l0 - MemoryCore("lstm", 3, 4).rnn.bias_ih_l0
    th.testing.assert_close(diff, th.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 8))  # (i, f, g, o): only f moves
    with pytest.raises(ValueError, match="gate_bias needs a gated core"):
        MemoryCore("rnn", 3, 4, gate_bias=1.0)
