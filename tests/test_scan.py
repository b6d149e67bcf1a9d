"""minGRU and minLSTM (recurrent_rl.nets.scan): the parallel scan against a sequential loop,
resets inside the scan, gradients, options."""

from __future__ import annotations

import pytest
import torch as th

from recurrent_rl.nets.memory import MemoryCore
from recurrent_rl.nets.scan import linear_scan, sequential_scan

SCAN_CORES = ["mingru", "minlstm"]


@pytest.mark.parametrize("T", [1, 2, 7, 40, 64])
def test_the_scan_equals_the_sequential_loop_in_float64_values_and_gradients(T):
    th.manual_seed(0)
    N, H = 3, 5
    a = th.rand(T, N, H, dtype=th.float64).requires_grad_(True)
    b = th.randn(T, N, H, dtype=th.float64).requires_grad_(True)
    h0 = th.randn(N, H, dtype=th.float64, requires_grad=True)
    keep = (th.rand(T, N, dtype=th.float64) > 0.2).double()  # resets as a = 0
    scanned = linear_scan(a * keep.unsqueeze(-1), b, h0)
    looped = sequential_scan(a, b, h0, keep)
    th.testing.assert_close(scanned, looped, atol=1e-12, rtol=1e-10)
    weights = th.randn_like(looped)
    g_scan = th.autograd.grad((scanned * weights).sum(), (a, b, h0))
    g_loop = th.autograd.grad((looped * weights).sum(), (a, b, h0))
    for x, y in zip(g_scan, g_loop):
        th.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("memory", SCAN_CORES)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_the_core_equals_its_steps_in_float64_with_resets_values_and_gradients(memory, num_layers):
    th.manual_seed(1)
    core = MemoryCore(memory, 4, 6, num_layers=num_layers).double()
    T, B = 30, 4
    x = th.randn(T, B, 4, dtype=th.float64, requires_grad=True)
    starts = (th.rand(T, B) < 0.2).double()
    state = (th.randn(num_layers, B, 6, dtype=th.float64),)
    out, final = core(x, state, starts)
    s, outs = state, []
    for t in range(T):
        o, s = core.step(x[t], s, starts[t])
        outs.append(o)
    ref = th.stack(outs)
    th.testing.assert_close(out, ref, atol=1e-12, rtol=1e-10)
    th.testing.assert_close(final[0], s[0], atol=1e-12, rtol=1e-10)
    weights = th.randn_like(ref)
    params = [x, *core.parameters()]
    for g1, g2 in zip(th.autograd.grad((out * weights).sum(), params), th.autograd.grad((ref * weights).sum(), params)):
        th.testing.assert_close(g1, g2, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("memory", SCAN_CORES)
def test_nothing_before_a_reset_reaches_the_gradient(memory):
    th.manual_seed(2)
    core = MemoryCore(memory, 3, 5, num_layers=2)
    T, B = 20, 2
    x = th.randn(T, B, 3, requires_grad=True)
    h0 = th.randn(2, B, 5, requires_grad=True)
    starts = th.zeros(T, B)
    starts[9, 0] = 1.0
    out, _ = core(x, (h0,), starts)
    grad_x, grad_h0 = th.autograd.grad(out[9:, 0].sum(), (x, h0))
    assert th.count_nonzero(grad_x[:9, 0]) == 0 and th.count_nonzero(grad_h0[:, 0]) == 0
    assert th.count_nonzero(grad_x[9:, 0]) > 0  # the steps after the reset do count
    assert th.count_nonzero(grad_x[:, 1]) == 0  # and nothing crosses between columns


@pytest.mark.parametrize("memory", SCAN_CORES)
def test_long_chunks_stay_finite_and_equal_their_steps_in_float32(memory):
    """T = 1024 with a saturating gate: the scan neither overflows nor drifts."""
    th.manual_seed(3)
    core = MemoryCore(memory, 2, 8, gate_bias=3.0)
    T, B = 1024, 2
    x = th.randn(T, B, 2) * 3
    state = core.initial_state(B)
    out, _ = core(x, state, th.zeros(T, B))
    s, outs = state, []
    with th.no_grad():
        for t in range(T):
            o, s = core.step(x[t], s, th.zeros(B))
            outs.append(o)
    assert th.isfinite(out).all()
    th.testing.assert_close(out, th.stack(outs), atol=1e-4, rtol=1e-4)


def test_gate_bias_keeps_the_state_longer():
    th.manual_seed(4)
    x = th.randn(16, 3, 4)
    for memory in SCAN_CORES:
        plain, kept = MemoryCore(memory, 4, 6), MemoryCore(memory, 4, 6)
        kept.load_state_dict(plain.state_dict())
        with th.no_grad():
            block = kept.rnn.layers[0].bias[:6]
            block += -2.0 if memory == "mingru" else 2.0
        biased = MemoryCore(memory, 4, 6, gate_bias=2.0)
        diff = biased.rnn.layers[0].bias[:6] - MemoryCore(memory, 4, 6).rnn.layers[0].bias[:6]
        assert diff.abs().mean() > 0.5  # the keep direction moved by about the bias
        # with the state-keeping bias, a state put in at t = 0 decays slower (in the state itself:
        # the layer norm of the output rescales it)
        state = (th.ones(1, 3, 6),)
        _, (end_plain,) = plain(x, state, th.zeros(16, 3))
        _, (end_kept,) = kept(x, state, th.zeros(16, 3))
        _, (zero_plain,) = plain(x, plain.initial_state(3), th.zeros(16, 3))
        _, (zero_kept,) = kept(x, kept.initial_state(3), th.zeros(16, 3))
        assert (end_kept - zero_kept).abs().mean() > (end_plain - zero_plain).abs().mean()


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="is not a memory type; choose one of"):
        MemoryCore("mingru2", 3, 4)
    with pytest.raises(ValueError, match=r"memory='mingru' takes no memory_kwargs \['memory_length'\]"):
        MemoryCore("mingru", 3, 4, memory_kwargs={"memory_length": 8})
    with pytest.raises(ValueError, match="takes no memory_kwargs"):
        MemoryCore("gru", 3, 4, memory_kwargs={"memory_length": 8})


def test_the_compiled_scan_equals_the_torch_scan_values_and_gradients():
    from recurrent_rl.accel import native

    if not native.available():
        pytest.skip("the compiled library is not built here (no C/C++ compiler)")
    th.manual_seed(5)
    a = th.rand(37, 3, 4, requires_grad=True)
    b = th.randn(37, 3, 4, requires_grad=True)
    h0 = th.randn(3, 4, requires_grad=True)
    compiled, reference = native.library().scan(a, b, h0), linear_scan(a, b, h0)
    th.testing.assert_close(compiled, reference, atol=1e-5, rtol=1e-5)
    weights = th.randn_like(reference)
    for x, y in zip(
        th.autograd.grad((compiled * weights).sum(), (a, b, h0)),
        th.autograd.grad((reference * weights).sum(), (a, b, h0)),
    ):
        th.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="float32 CPU"):
        native.library().scan(a.double(), b.double(), h0.double())
    with pytest.raises(ValueError, match="one entry per column"):
        native.library().scan(a, b, th.zeros(5))


@pytest.mark.parametrize("memory", SCAN_CORES)
def test_the_speed_backend_runs_scan_cores_through_the_compiled_scan(memory, monkeypatch):
    from recurrent_rl.accel import native
    from recurrent_rl.accel.backend import CpuKernels
    from recurrent_rl.nets.backend import TorchBackend

    if not native.available():
        pytest.skip("the compiled library is not built here (no C/C++ compiler)")
    th.manual_seed(6)
    cores = [MemoryCore(memory, 3, 5, num_layers=2) for _ in range(2)]
    xs = [th.randn(12, 4, 3) for _ in cores]
    states = [(th.randn(2, 4, 5),) for _ in cores]
    starts = (th.rand(12, 4) < 0.2).float()
    calls = []
    real = native.library().scan
    monkeypatch.setattr(
        native, "library", lambda: type("Lib", (), {"scan": staticmethod(lambda *a: calls.append(1) or real(*a))})
    )
    fast = CpuKernels().forward_cores(cores, xs, states, starts)
    assert len(calls) == 4  # two cores of two layers
    plain = TorchBackend().forward_cores(cores, xs, states, starts)
    for (o1, f1), (o2, f2) in zip(fast, plain):
        th.testing.assert_close(o1, o2, atol=1e-5, rtol=1e-5)
        th.testing.assert_close(f1[0], f2[0], atol=1e-5, rtol=1e-5)
