"""The compiled kernels (recurrent_rl/native.py): built here, equal to the NumPy kernels, and a
clear fallback when they cannot be built."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch as th

from recurrent_rl.accel import native
from recurrent_rl.accel.backend import CpuKernels
from recurrent_rl.nets.memory import MemoryCore

KERNELS = CpuKernels()
forward_cores = KERNELS.forward_cores  # the speed backend's path through the cores


def run(core: MemoryCore, x: th.Tensor, state, starts: th.Tensor, need_final_state: bool = True):
    """One core over a (T, B, F) batch through the speed backend."""
    return KERNELS.forward_cores([core], [x], [state], starts, need_final_state)[0]


def test_library_builds_on_this_machine():
    """CI machines have a C compiler: the fast path must really be the one under test."""
    assert native.compiler() is not None
    assert native.available(), "the compiled kernels did not build; see the RuntimeWarning"


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("H", [5, 64, 70])  # below, at and off the vector width
def test_compiled_equals_numpy_kernels(memory, H, monkeypatch):
    """Stacked actor+critic cores, two layers, resets inside the batch: outputs, final states and
    every gradient of the compiled loops equal the NumPy loops' (float32)."""
    th.manual_seed(H)
    T, B, F = 17, 6, 3
    cores = [MemoryCore(memory, F, H, num_layers=2) for _ in range(2)]
    xs = [th.randn(T, B, F, requires_grad=True) for _ in cores]
    states = [tuple(th.randn_like(s) for s in c.initial_state(B)) for c in cores]
    starts = (th.rand(T, B) < 0.2).float()
    starts[5, 0] = 1.0
    weights = [th.randn(T, B, H) for _ in cores]
    params = [*xs, *(p for c in cores for p in c.parameters())]

    def run():
        outs = forward_cores(cores, xs, states, starts)
        loss = sum((o * w).sum() + sum(s.square().sum() for s in final) for (o, final), w in zip(outs, weights))
        return outs, th.autograd.grad(loss, params)

    compiled_outs, compiled_grads = run()
    monkeypatch.setattr(native, "available", lambda: False)
    numpy_outs, numpy_grads = run()
    for (a, fa), (b, fb) in zip(compiled_outs, numpy_outs):
        th.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)
        for sa, sb in zip(fa, fb):
            th.testing.assert_close(sa, sb, atol=2e-6, rtol=1e-5)
    for ga, gb in zip(compiled_grads, numpy_grads):
        th.testing.assert_close(ga, gb, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("n_cores", [2, 3])
def test_cores_on_two_threads_equal_one_thread(memory, n_cores):
    """With two threads the helper runs some of the cores: outputs, final states and gradients
    are bit-identical to one thread (each core's arithmetic is the same), for an odd split too."""
    th.manual_seed(n_cores)
    T, B, F, H = 16, 8, 3, 24  # T * B = 128 rows: above native.PARALLEL_MIN_ROWS
    assert T * B >= native.PARALLEL_MIN_ROWS
    cores = [MemoryCore(memory, F, H) for _ in range(n_cores)]
    xs = [th.randn(T, B, F, requires_grad=True) for _ in cores]
    states = [tuple(th.randn_like(s) for s in c.initial_state(B)) for c in cores]
    starts = (th.rand(T, B) < 0.2).float()
    params = [*xs, *(p for c in cores for p in c.parameters())]

    def run(threads):
        with kernel_threads(threads):
            assert native.threads_for(n_cores, T * B) == threads
            outs = forward_cores(cores, xs, states, starts)
            loss = sum((o.square().sum() + sum(s.sum() for s in final)) for o, final in outs)
            return [o for o, _ in outs] + [s for _, final in outs for s in final] + list(th.autograd.grad(loss, params))

    for _ in range(3):  # the helper thread is reused across calls
        for a, b in zip(run(1), run(2)):
            assert th.equal(a, b)


@contextlib.contextmanager
def kernel_threads(n: int):
    """Compiled layers on ``n`` threads (torch on one, as two kernel threads need)."""
    previous_torch, previous = th.get_num_threads(), native.kernel_threads()
    th.set_num_threads(1)
    native.set_kernel_threads(n)
    try:
        yield
    finally:
        native.set_kernel_threads(previous)
        th.set_num_threads(previous_torch)


def test_two_kernel_threads_need_torch_on_one_thread():
    """With torch's own pool on the second core the helper would fight it: warn, use one thread."""
    previous_torch, previous = th.get_num_threads(), native.kernel_threads()
    try:
        native.set_kernel_threads(2)
        th.set_num_threads(2)
        native._warn_once.cache_clear()
        with pytest.warns(RuntimeWarning, match=r"torch.set_num_threads\(1\)"):
            assert native.threads_for(2, 256) == 1
        th.set_num_threads(1)
        assert native.threads_for(2, 256) == 2
        assert native.threads_for(1, 256) == 1 and native.threads_for(2, native.PARALLEL_MIN_ROWS - 1) == 1
    finally:
        native.set_kernel_threads(previous)
        th.set_num_threads(previous_torch)
    for bad in (0, 3, True, "2", "Auto"):
        with pytest.raises(ValueError, match="must be 1, 2 or 'auto'"):
            native.set_kernel_threads(bad)


def test_auto_kernel_threads_take_the_second_cpu_when_there_is_one(monkeypatch, recwarn):
    """'auto' (the default): 2 threads when the process may use two CPUs and torch is on one
    thread; otherwise 1, without the warning an explicit 2 gives."""
    previous_torch, previous = th.get_num_threads(), native.kernel_threads()
    try:
        native.set_kernel_threads("auto")
        th.set_num_threads(1)
        monkeypatch.setattr(native, "usable_cpus", lambda: 2)
        assert native.threads_for(2, 256) == 2 and native.threads_for(1, 256) == 1
        monkeypatch.setattr(native, "usable_cpus", lambda: 1)
        assert native.threads_for(2, 256) == 1
        monkeypatch.setattr(native, "usable_cpus", lambda: 2)
        th.set_num_threads(2)
        native._warn_once.cache_clear()
        assert native.threads_for(2, 256) == 1
        assert not [w for w in recwarn if "kernel threads" in str(w.message)]
    finally:
        native.set_kernel_threads(previous)
        th.set_num_threads(previous_torch)
    monkeypatch.delenv("RECURRENT_RL_THREADS", raising=False)
    monkeypatch.setattr(native, "_THREADS", [])
    assert native.kernel_threads() == "auto"
    monkeypatch.setattr(native, "_THREADS", [])
    monkeypatch.setenv("RECURRENT_RL_THREADS", "1")
    assert native.kernel_threads() == 1


def _two_thread_forward(queue) -> None:
    th.set_num_threads(1)
    native.set_kernel_threads(2)
    cores = [MemoryCore("gru", 3, 16) for _ in range(2)]
    xs = [th.randn(32, 8, 3) for _ in cores]
    with th.no_grad():
        outs = forward_cores(cores, xs, [c.initial_state(8) for c in cores], th.zeros(32, 8))
    queue.put(float(outs[1][0].abs().sum()))


def test_a_forked_child_starts_its_own_helper_thread():
    """A child forked after the helper thread started (SubprocVecEnv with fork, multiprocessing)
    has no helper; its first two-thread call must start one instead of waiting forever."""
    import multiprocessing

    with kernel_threads(2):
        _two_thread_forward(multiprocessing.Queue())  # the parent's helper is running now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_two_thread_forward, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in a two-thread kernel call")
    assert child.exitcode == 0 and queue.get(timeout=5) > 0


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn"])
def test_saturated_gates_stay_finite(memory):
    """Pre-activations far outside the exp range (|x| > 88) give exact 0/1 gates and +-1 tanh,
    not inf/nan, and the same outputs as the NumPy loops."""
    th.manual_seed(0)
    core = MemoryCore(memory, 3, 16)
    x = th.randn(5, 2, 3) * 1e4
    starts = th.zeros(5, 2)
    out, final = run(core, x, core.initial_state(2), starts)
    assert th.isfinite(out).all() and all(th.isfinite(s).all() for s in final)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(native, "available", lambda: False)
        ref, _ = run(core, x, core.initial_state(2), starts)
    th.testing.assert_close(out, ref)


def test_build_is_cached_and_atomic(tmp_path, monkeypatch):
    """A build lands under a content-addressed name in the cache, with no temporary left behind;
    a second build reuses it."""
    monkeypatch.setenv("RECURRENT_RL_CACHE", str(tmp_path))
    path = native.build()
    assert path.parent == tmp_path and path.suffix == ".so"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    mtime = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == mtime


def test_without_a_compiler_numpy_kernels_run_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("RECURRENT_RL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    native.library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="NumPy kernels.*C compiler"):
            assert native.library() is None
        assert not native.available()
        # and the cores still run (NumPy path), equal to stepping
        core = MemoryCore("gru", 3, 8)
        x, starts = th.randn(6, 2, 3), th.zeros(6, 2)
        out, _ = run(core, x, core.initial_state(2), starts)
        state, steps = core.initial_state(2), []
        for t in range(6):
            o, state = core.step(x[t], state, starts[t])
            steps.append(o)
        th.testing.assert_close(out, th.stack(steps), atol=1e-5, rtol=0)
    finally:
        native.library.cache_clear()


def test_a_failing_compiler_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'fatal: no space left' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("RECURRENT_RL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(native.NativeBuildError, match="no space left"):
        native.build()
    assert not any((tmp_path / "cache").iterdir())  # no half-written library


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("RECURRENT_RL_NATIVE", "0")
    native.library.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # switching it off on purpose is silent
            assert native.library() is None
    finally:
        native.library.cache_clear()


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn"])
def test_compiled_steps_equal_torch_cells(memory, monkeypatch):
    """Rollout steps (no grad): one compiled call for actor + critic equals torch's cell
    functions core by core, outputs and states, over several steps with resets."""
    from recurrent_rl.nets.memory import step_cores

    th.manual_seed(7)
    cores = [MemoryCore(memory, 4, 24, num_layers=2) for _ in range(2)]
    B = 5
    states = [tuple(th.randn_like(s) for s in c.initial_state(B)) for c in cores]
    ref_states = [tuple(s.clone() for s in st) for st in states]
    with th.no_grad():
        for t in range(6):
            xs = [th.randn(B, 4) for _ in cores]
            start = (th.rand(B) < 0.3).float()
            got = step_cores(cores, xs, states, start)
            with monkeypatch.context() as mp:
                mp.setattr(native, "available", lambda: False)
                ref = step_cores(cores, xs, ref_states, start)
            for (out, st), (ref_out, ref_st) in zip(got, ref):
                th.testing.assert_close(out, ref_out, atol=2e-6, rtol=1e-5)
                for a, b in zip(st, ref_st):
                    th.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)
            states = [st for _, st in got]
            ref_states = [st for _, st in ref]


def test_shapes_are_checked_before_the_c_call():
    """The C loops trust their sizes; a mismatch is a ValueError naming the shapes, not a crash."""
    core = MemoryCore("gru", 4, 8)
    weights = [core.rnn.weight_ih_l0, core.rnn.bias_ih_l0, core.rnn.weight_hh_l0, core.rnn.bias_hh_l0]  # one core
    keep = th.ones(3, 2)
    with th.no_grad():
        with pytest.raises(ValueError, match=r"shape \(3, 2, 4\), got \(3, 2, 2\)"):
            native.layer("gru", keep, [th.zeros(3, 2, 2)], weights, [th.zeros(2, 8)])
        with pytest.raises(ValueError, match=r"shape \(2, 8\), got \(2, 7\)"):
            native.layer("gru", keep, [th.zeros(3, 2, 4)], weights, [th.zeros(2, 7)])
        with pytest.raises(ValueError, match="float32"):
            native.layer("gru", keep, [th.zeros(3, 2, 4, dtype=th.float64)], weights, [th.zeros(2, 8)])
        with pytest.raises(ValueError, match="W_ih has 24 rows, expected 4 x hidden size 8"):
            native.layer("lstm", keep, [th.zeros(3, 2, 4)], weights, [th.zeros(2, 8)])
        lstm = MemoryCore("lstm", 4, 8)
        lstm_weights = [lstm.rnn.weight_ih_l0, lstm.rnn.bias_ih_l0, lstm.rnn.weight_hh_l0, lstm.rnn.bias_hh_l0]
        with pytest.raises(ValueError, match="each of the 1 cores"):  # no cell state
            native.layer("lstm", keep, [th.zeros(3, 2, 4)], lstm_weights, [th.zeros(2, 8)])


def test_one_step_calls_check_shapes_like_sequence_calls():
    """native.step (rollouts, predict) checks its (B, F) inputs and (L, B, H) states like native.layer."""
    core = MemoryCore("gru", 4, 8)
    weights = [core.rnn.weight_ih_l0, core.rnn.bias_ih_l0, core.rnn.weight_hh_l0, core.rnn.bias_hh_l0]
    keep = th.ones(2)
    with th.no_grad():
        outs, hs, cs = native.step("gru", keep, [th.zeros(2, 4)], weights, [th.zeros(1, 2, 8)])
        assert outs[0].shape == (2, 8) and hs[0].shape == (1, 2, 8) and cs is None
        assert outs[0].data_ptr() == hs[0].data_ptr()  # the output is the top layer's state, not a copy
        with pytest.raises(ValueError, match=r"shape \(2, 4\), got \(2, 3\)"):
            native.step("gru", keep, [th.zeros(2, 3)], weights, [th.zeros(1, 2, 8)])
        with pytest.raises(ValueError, match=r"shape \(2, 8\), got \(2, 7\)"):
            native.step("gru", keep, [th.zeros(2, 4)], weights, [th.zeros(1, 2, 7)])
        with pytest.raises(ValueError, match="float32"):
            native.step("gru", keep, [th.zeros(2, 4, dtype=th.float64)], weights, [th.zeros(1, 2, 8)])
        with pytest.raises(ValueError, match="W_ih has 24 rows, expected 4 x hidden size 8"):
            native.step("lstm", keep, [th.zeros(2, 4)], weights, [th.zeros(1, 2, 8)], [th.zeros(1, 2, 8)])
        with pytest.raises(ValueError, match="need 4 weights per core and layer"):
            native.step("gru", keep, [th.zeros(2, 4)], weights, [th.zeros(2, 2, 8)])  # two layers' states
        with pytest.raises(ValueError, match="states must be"):
            native.step("gru", keep, [th.zeros(2, 4)], weights, [th.zeros(2, 8)])


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn"])
def test_pooled_buffers_carry_nothing_between_calls(memory):
    """Saved and scratch arrays are recycled between calls: results of a batch do not depend
    on which batches ran before it (run in one order, then the other, bit for bit)."""
    th.manual_seed(0)
    cores = [MemoryCore(memory, 3, 16) for _ in range(2)]
    batches = []
    for seed in (1, 2):
        g = th.Generator().manual_seed(seed)
        xs = [th.randn(9, 4, 3, generator=g) for _ in cores]
        states = [tuple(th.randn(s.shape, generator=g) for s in c.initial_state(4)) for c in cores]
        batches.append((xs, states, (th.rand(9, 4, generator=g) < 0.2).float()))

    def run(xs, states, starts):
        outs = forward_cores(cores, xs, states, starts)
        loss = sum((o.sin()).sum() for o, _ in outs)
        return [o.detach() for o, _ in outs] + list(th.autograd.grad(loss, [p for c in cores for p in c.parameters()]))

    first = [run(*b) for b in batches]
    second = [run(*b) for b in reversed(batches)][::-1]
    for a, b in zip(first, second):
        assert all(th.equal(x, y) for x, y in zip(a, b))


def test_a_second_backward_through_a_layer_is_refused_clearly():
    """The saved arrays go back to the pool after the backward pass; a second backward
    (retain_graph=True) must say so instead of reading recycled memory."""
    core = MemoryCore("gru", 3, 8)
    x = th.randn(4, 2, 3, requires_grad=True)
    out, _ = run(core, x, core.initial_state(2), th.zeros(4, 2))
    loss = out.square().sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="freed after its first backward pass"):
        loss.backward()


def test_gradients_reach_inputs_only_when_asked():
    """dx is computed for inputs that need it (an encoder below the memory) and left out otherwise."""
    core = MemoryCore("lstm", 3, 8)
    x = th.randn(4, 2, 3, requires_grad=True)
    out, final = run(core, x, core.initial_state(2), th.zeros(4, 2))
    (out.sum() + final[1].sum()).backward()
    assert x.grad is not None and th.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    frozen = th.randn(4, 2, 3)
    out, _ = run(core, frozen, core.initial_state(2), th.zeros(4, 2))
    out.sum().backward()
    assert frozen.grad is None and core.rnn.weight_hh_l0.grad is not None


def test_tiny_two_thread_calls_run_every_core_once():
    """Calls this small often end before the helper starts, so the caller claims the helper's
    half (csrc/recurrent.c, for_cores): over many calls, each must still run every core exactly
    once (outputs equal one thread's, bit for bit)."""
    th.manual_seed(3)
    T, B, F, H = 8, 8, 2, 4  # 64 rows per core: just enough for the helper
    cores = [MemoryCore("gru", F, H) for _ in range(2)]
    xs = [th.randn(T, B, F) for _ in cores]
    states = [c.initial_state(B) for c in cores]
    starts = th.zeros(T, B)
    with th.no_grad(), kernel_threads(1):
        expected = [o for o, _ in forward_cores(cores, xs, states, starts, need_final_state=False)]
    with th.no_grad(), kernel_threads(2):
        assert native.threads_for(2, T * B) == 2
        for _ in range(2000):
            outs = forward_cores(cores, xs, states, starts, need_final_state=False)
            assert all(th.equal(o, e) for (o, _), e in zip(outs, expected))
