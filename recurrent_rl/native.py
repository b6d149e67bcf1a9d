"""Compiled time loops: ``csrc/recurrent.c``, built with the system C compiler, called through ctypes.

Why: the NumPy kernels (``kernels.py``) pay about 1 µs of call overhead per array operation,
some 15 operations per step and layer, forward and backward; for RL's small batches that
overhead, not the arithmetic, is the cost of a recurrent update. The C loops do a step of
stacked cores in one pass with vectorized exp/tanh, so a whole (T, C, B) layer costs one call.

The library is compiled on first use (``cc -O3 -march=native``, under a second), cached in
``$RECURRENT_RL_CACHE`` (default ``~/.cache/recurrent_rl``) under a name made from the source,
the flags, the compiler and the CPU, and written atomically so concurrent processes (pytest
workers, parallel runs) never load a half-written file. ``scripts/setup.sh`` builds it at
install time. Without a working compiler, or with ``RECURRENT_RL_NATIVE=0``, :func:`library`
returns None and the NumPy kernels run instead, with a one-time warning naming the cause.

Float32 only (the dtype of every SB3 policy); float64 goes to the NumPy kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch as th
from torch.autograd.function import FunctionCtx, once_differentiable

SOURCE = Path(__file__).parent / "csrc" / "recurrent.c"
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-std=gnu99", "-fPIC", "-shared", "-pthread")
# C function -> number of pointer arguments after threads and the sizes T, C, B, F, H
_FUNCTIONS = {
    "gru_forward": 15,
    "gru_backward": 19,
    "lstm_forward": 15,
    "lstm_backward": 20,
    "rnn_forward": 10,
    "rnn_backward": 16,
}


class NativeBuildError(RuntimeError):
    """The C kernels could not be compiled or loaded (the message says why and what to do)."""


def cache_dir() -> Path:
    root = os.environ.get("RECURRENT_RL_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "recurrent_rl"


def compiler() -> str | None:
    """The C compiler: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_signature() -> str:
    """Model and feature flags: -march=native code is only valid on a CPU like this one."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(lines)))


def library_path(cc: str) -> Path:
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), cc.encode(), platform.machine().encode(),
                 _cpu_signature().encode()):  # fmt: skip
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"recurrent-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the library into the cache (if not already there) and return its path.

    :raises NativeBuildError: no compiler, or the compiler failed (its output is in the message)
    """
    cc = compiler()
    if cc is None:
        raise NativeBuildError("no C compiler found (set CC, or install gcc or clang)")
    path = library_path(cc)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # compile to a temporary name in the same folder, then rename: readers see all or nothing
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        result = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        if result.returncode != 0:
            raise NativeBuildError(f"{cc} failed on {SOURCE}:\n{result.stderr.strip()[-2000:]}")
        os.replace(tmp, path)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeBuildError(f"could not run {cc} on {SOURCE}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, n_pointers in _FUNCTIONS.items():
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_int] * 6 + [ctypes.c_void_p] * n_pointers
        fn.restype = None
    return lib


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded library, or None (disabled, or no compiler: the NumPy kernels then run)."""
    if os.environ.get("RECURRENT_RL_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        return _load(build())
    except (NativeBuildError, OSError) as exc:
        warnings.warn(
            f"recurrent_rl: compiled kernels unavailable, using the slower NumPy kernels ({exc}). "
            "Install a C compiler (gcc or clang) for full speed, or set RECURRENT_RL_NATIVE=0 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def available() -> bool:
    return library() is not None


GATES = {"gru": 3, "lstm": 4, "rnn": 1}

# Below this many (step, column) pairs per core, handing half the cores to the helper thread
# costs more than it saves (measured with benchmarks/kernels.py; see threads_for).
PARALLEL_MIN_ROWS = 64


def threads_for(n_cores: int, rows: int) -> int:
    """Threads for one call over ``n_cores`` cores of ``rows`` = T * B rows each (see
    :func:`kernel_threads`): 1 for a single core or too little work."""
    if n_cores < 2 or rows < PARALLEL_MIN_ROWS or kernel_threads() == 1:
        return 1
    if th.get_num_threads() > 1:
        # torch's own thread pool then holds the second core: measured on the core benchmark,
        # the update takes 104 ms per rollout with both against 49 ms with torch on one thread
        _warn_once(
            "recurrent_rl: kernel threads 2 needs torch on one thread (torch.set_num_threads(1)); torch has "
            f"{th.get_num_threads()}, so the compiled layers run on one thread"
        )
        return 1
    return 2


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


_THREADS: list[int] = []  # set by set_kernel_threads, else read from the environment once


def kernel_threads() -> int:
    """How many threads a compiled call may use: what :func:`set_kernel_threads` set, else
    ``RECURRENT_RL_THREADS`` (default 1). Two threads run the actor's and the critic's cores side
    by side; a call has no more independent halves than that, so 1 and 2 are the choices."""
    if not _THREADS:
        value = os.environ.get("RECURRENT_RL_THREADS", "1").strip()
        _THREADS.append(_valid_threads(int(value) if value.isdigit() else value, "RECURRENT_RL_THREADS"))
    return _THREADS[0]


def set_kernel_threads(n: int) -> None:
    """Let the compiled layers use ``n`` threads: 1 (all cores on the calling thread) or 2."""
    _THREADS[:] = [_valid_threads(n, "kernel threads")]


def _valid_threads(n: Any, what: str) -> int:
    if isinstance(n, bool) or n not in (1, 2):
        raise ValueError(f"{what} must be 1 or 2, got {n!r} (2 runs the actor's and critic's memories side by side)")
    return int(n)


def _ptrs(tensors: list[th.Tensor | None]) -> Any:
    """A C array of the tensors' data pointers (NULL for None); keep it alive during the call."""
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() if t is not None else None for t in tensors))


_WEIGHT_POINTERS: dict[tuple[int, ...], tuple[Any, ...]] = {}  # data pointers -> C arrays of them


def _weight_pointers(kind: str, weights: list[list[th.Tensor]], F: int, G: int, H: int) -> tuple[Any, ...]:
    """C arrays of the cores' w_ih, b_ih, w_hh, b_hh pointers, cached by address: a rollout asks
    for the same weights at every step (Adam updates them in place)."""
    if tuple(t.shape for w in weights for t in w) != ((G, F), (G,), (G, H), (G,)) * len(weights):
        for w in weights:  # says which one
            _check(kind, [(w[0], (G, F)), (w[1], (G,)), (w[2], (G, H)), (w[3], (G,))], F, H)
    key = tuple(t.data_ptr() for w in weights for t in w)
    found = _WEIGHT_POINTERS.get(key)
    if found is None:  # new weights: check them fully once
        for w in weights:
            _check(kind, [(w[0], (G, F)), (w[1], (G,)), (w[2], (G, H)), (w[3], (G,))], F, H)
        if len(_WEIGHT_POINTERS) > 256:
            _WEIGHT_POINTERS.clear()
        found = _WEIGHT_POINTERS[key] = tuple(_ptrs([w[i] for w in weights]) for i in range(4))
    return found


class _BufferPool:
    """Float32 CPU buffers that go back to a pool after use, by size.

    A gradient step of the zoo's CartPole policy needs about 2 MB of saved and scratch arrays.
    Fresh allocations of that size come as new pages from the OS (glibc maps them), and the
    page faults cost more than half the compiled forward pass: measured 258 µs for the GRU
    forward call with fresh buffers against 212 µs with reused ones, and 371 against 313 µs for
    the backward. A buffer goes back only when no tensor views it any more (the saved arrays
    after the backward pass, scratch after the call).
    """

    def __init__(self, keep: int = 8):
        self._keep = keep
        self._free: dict[int, list[th.Tensor]] = {}

    def take(self, n: int) -> th.Tensor:
        free = self._free.get(n)
        if free:
            try:
                return free.pop()
            except IndexError:  # another thread took the last one
                pass
        return th.empty(n)

    def give(self, buffer: th.Tensor) -> None:
        free = self._free.setdefault(buffer.numel(), [])
        if len(free) < self._keep:
            free.append(buffer)


_POOL = _BufferPool()


def layer_forward(
    kind: str, keep: th.Tensor, xs: list[th.Tensor], weights: list[list[th.Tensor]], h0s: list[th.Tensor],
    c0s: list[th.Tensor] | None = None, save: bool = True,
) -> tuple[list[th.Tensor], list[th.Tensor] | None, tuple[th.Tensor, ...]]:
    """One layer of C cores of one kind and size over a (T, B) batch, no autograd.

    :param kind: ``"gru"``, ``"lstm"`` or ``"rnn"``
    :param keep: (T, B) float32, 0 where the state is zeroed before the step
    :param xs: per core, the input (T, B, F)
    :param weights: per core, ``[w_ih, b_ih, w_hh, b_hh]`` as in ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``
    :param h0s: per core, the state entering the batch (B, H); ``c0s`` the LSTM cells
    :param save: keep the arrays the backward pass needs (else they live in a scratch buffer)
    :return: per core the outputs (T, B, H), per core the last cells (LSTM) or None, and the
        arrays the backward pass needs followed by the pooled buffer holding them (empty if not
        ``save``; :meth:`Layer.backward` gives the buffer back)
    All tensors float32, C-contiguous, on the CPU (checked: the C loops trust their sizes).
    """
    lib = library()
    assert lib is not None, "recurrent_rl.native.layer_forward needs the compiled library"
    # the layer's sizes come from its first core's weights; everything else is checked against them
    T, B = xs[0].shape[:2]
    G, F = weights[0][0].shape
    C, H = len(xs), weights[0][2].shape[-1]
    if G != GATES[kind] * H:
        raise ValueError(f"compiled {kind} layer: W_ih has {G} rows, expected {GATES[kind]} x hidden size {H}")
    if len(weights) != C or len(h0s) != C or (kind == "lstm" and (c0s is None or len(c0s) != C)):
        raise ValueError(f"compiled {kind} layer: need inputs, weights and states for each of the {C} cores")
    w_ih, b_ih, w_hh, b_hh = _weight_pointers(kind, weights, F, G, H)
    _check(kind, [(keep, (T, B)), *((x, (T, B, F)) for x in xs), *((h, (B, H)) for h in h0s),
                  *((c, (B, H)) for c in (c0s or []) if kind == "lstm")], F, H)  # fmt: skip
    new = xs[0].new_empty
    out_all = new(C, T, B, H)
    outs = list(out_all.unbind(0))
    x_p, h0_p, keep_p = _ptrs(xs), _ptrs(h0s), keep.data_ptr()
    out_p = _offsets(out_all, [T * B * H] * C)
    # saved arrays (per kind), then scratch; one allocation, C sees offsets into it
    saved_sizes = {"gru": [H, 2 * H, H, H], "lstm": [H, H, G, H], "rnn": [H]}[kind]
    saved_sizes = [C * T * B * n for n in saved_sizes]
    scratch_sizes = {"gru": [T * B * G, max(F, H) * G, B * G], "lstm": [max(F, H) * G], "rnn": [max(F, H) * H]}[kind]
    scratch_sizes = [C * n for n in scratch_sizes]  # one block per core: the cores may run in parallel
    threads = threads_for(C, T * B)
    buffer = _POOL.take(sum(saved_sizes) + sum(scratch_sizes))
    ptr = _offsets(buffer, saved_sizes + scratch_sizes)
    saved: tuple[th.Tensor, ...] = ()
    if save:  # the views, then the buffer itself, for Layer.backward to give back
        shapes = {"gru": [(C, T, B, H), (C, T, B, 2 * H), (C, T, B, H), (C, T, B, H)],
                  "lstm": [(C, T, B, H), (C, T, B, H), (C, T, B, G), (C, T, B, H)], "rnn": [(C, T, B, H)]}[kind]  # fmt: skip
        parts = buffer.split(saved_sizes + [sum(scratch_sizes)])
        saved = (*(part.view(shape) for part, shape in zip(parts, shapes)), buffer)
        del parts
    c_all = new(C, B, H) if kind == "lstm" else None
    try:
        _run_forward(lib, kind, threads, (T, C, B, F, H), x_p, (w_ih, b_ih, w_hh, b_hh), h0_p, c0s, keep_p, ptr, out_p,
                     c_all)  # fmt: skip
    finally:
        if not save:
            _POOL.give(buffer)
    return outs, (list(c_all.unbind(0)) if c_all is not None else None), saved


def _run_forward(lib: Any, kind: str, threads: int, sizes: tuple[int, ...], x_p: Any, weights: tuple[Any, ...],
                 h0_p: Any, c0s: list[th.Tensor] | None, keep_p: int, ptr: Any, out_p: Any,
                 c_all: th.Tensor | None) -> None:  # fmt: skip
    """The C forward call of :func:`layer_forward` (pointers prepared there)."""
    T, C, B, F, H = sizes
    w_ih, b_ih, w_hh, b_hh = weights
    if kind == "gru":  # saved: prev, rz, cand, ghn; scratch: gi, wt, g
        lib.gru_forward(threads, T, C, B, F, H, x_p, w_ih, b_ih, w_hh, b_hh, h0_p, keep_p, ptr[4], ptr[5], ptr[6], ptr[0],
                        ptr[1], ptr[2], ptr[3], out_p)  # fmt: skip
    elif kind == "lstm":  # saved: prev_h, prev_c, acts, tanh_c; scratch: wt
        lib.lstm_forward(threads, T, C, B, F, H, x_p, w_ih, b_ih, w_hh, b_hh, h0_p, _ptrs(c0s), keep_p, ptr[4],  # type: ignore[arg-type]
                         ptr[0], ptr[1], ptr[2], ptr[3], out_p, _offsets(c_all, [B * H] * C))  # type: ignore[arg-type]  # fmt: skip
    else:
        lib.rnn_forward(threads, T, C, B, F, H, x_p, w_ih, b_ih, w_hh, b_hh, h0_p, keep_p, ptr[1], ptr[0], out_p)


def _offsets(buffer: th.Tensor, sizes: list[int]) -> Any:
    """C array of pointers to consecutive parts of ``buffer`` with these element counts."""
    base, out, offset = buffer.data_ptr(), [], 0
    for n in sizes:
        out.append(base + 4 * offset)
        offset += n
    return (ctypes.c_void_p * len(out))(*out)


def _check(kind: str, expected: list[tuple[th.Tensor, tuple[int, ...]]], F: int, H: int) -> None:
    for t, shape in expected:
        if t.shape != shape or t.dtype is not th.float32 or not t.is_cpu or not t.is_contiguous():
            raise ValueError(
                f"compiled {kind} layer: expected a contiguous float32 CPU tensor of shape {shape}, got "
                f"{tuple(t.shape)} {t.dtype} on {t.device} (input features {F}, hidden size {H})"
            )


class Layer(th.autograd.Function):
    """One layer of stacked cores as one autograd node (see :func:`layer_forward`).

    ``Layer.apply(kind, keep, n_cores, *xs, *w_ih, *b_ih, *w_hh, *b_hh, *h0s[, *c0s])`` returns the
    per-core outputs (T, B, H), then for the LSTM the per-core last cells (B, H).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, kind: str, keep: th.Tensor, n: int, *tensors: th.Tensor) -> tuple[th.Tensor, ...]:  # type: ignore[override]
        t = [x.detach().contiguous() for x in tensors]
        xs, w_ih, b_ih, w_hh, b_hh, h0s = (t[i * n : (i + 1) * n] for i in range(6))
        c0s = t[6 * n : 7 * n] if kind == "lstm" else None
        keep = keep.contiguous()
        weights = [list(w) for w in zip(w_ih, b_ih, w_hh, b_hh)]
        outs, c_lasts, saved = layer_forward(kind, keep, xs, weights, h0s, c0s)
        ctx.kind, ctx.n = kind, n
        ctx.needs_dx = [ctx.needs_input_grad[3 + i] for i in range(n)]
        ctx.arrays = (keep, xs, w_ih, w_hh, outs, saved)
        return (*outs, *(c_lasts or ()))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        lib = library()
        keep, xs, w_ih, w_hh, outs, saved = ctx.arrays
        del ctx.arrays
        kind, n = ctx.kind, ctx.n
        T, B, F = xs[0].shape
        H = outs[0].shape[-1]
        G = GATES[kind] * H
        new = xs[0].new_empty
        d_out = [g.contiguous() for g in grads[:n]]
        dxs = [new(T, B, F) if need else None for need in ctx.needs_dx]
        dw_ih, db_ih, dw_hh, db_hh = ([new(G, F) for _ in range(n)], [new(G) for _ in range(n)],
                                      [new(G, H) for _ in range(n)], [new(G) for _ in range(n)])  # fmt: skip
        dh0s = [new(B, H) for _ in range(n)]
        common = (threads_for(n, T * B), T, n, B, F, H, _ptrs(xs), _ptrs(w_ih), _ptrs(w_hh), keep.data_ptr())
        out_ptrs = (_ptrs(dxs), _ptrs(dw_ih), _ptrs(db_ih), _ptrs(dw_hh), _ptrs(db_hh), _ptrs(dh0s))
        scratch = {"gru": 2 * T * B * G, "lstm": T * B * G, "rnn": T * B * H}[kind]
        work = _POOL.take(n * (max(F, H) * G + B * H + scratch))  # scratch: one block per core
        tr, dh, rest = work.split([n * max(F, H) * G, n * B * H, n * scratch])
        tr, dh = tr.view(n, max(F, H), G), dh.view(n, B, H)
        dc0s: list[th.Tensor] = []
        if kind == "gru":
            prev, rz, cand, ghn, buffer = saved
            ggi, ggh = rest.view(2, n, T, B, G).unbind(0)
            lib.gru_backward(*common, prev.data_ptr(), rz.data_ptr(), cand.data_ptr(), ghn.data_ptr(), _ptrs(d_out),
                             ggi.data_ptr(), ggh.data_ptr(), tr.data_ptr(), dh.data_ptr(), *out_ptrs)  # fmt: skip
        elif kind == "lstm":
            prev_h, prev_c, acts, tanh_c, buffer = saved
            dc_last = [g.contiguous() for g in grads[n:]]
            dc0s = [new(B, H) for _ in range(n)]
            gp = rest.view(n, T, B, G)
            lib.lstm_backward(*common, prev_h.data_ptr(), prev_c.data_ptr(), acts.data_ptr(), tanh_c.data_ptr(),
                              _ptrs(d_out), _ptrs(dc_last), gp.data_ptr(), tr.data_ptr(), dh.data_ptr(), *out_ptrs,
                              _ptrs(dc0s))  # fmt: skip
        else:
            prev, buffer = saved
            ga = rest.view(n, T, B, H)
            lib.rnn_backward(*common, prev.data_ptr(), _ptrs(outs), _ptrs(d_out), ga.data_ptr(), tr.data_ptr(),
                             dh.data_ptr(), *out_ptrs)  # fmt: skip
        _POOL.give(work)  # nothing returned views these two
        _POOL.give(buffer)
        return (None, None, None, *dxs, *dw_ih, *db_ih, *dw_hh, *db_hh, *dh0s, *dc0s)


def main() -> None:
    """Build the library now and say where it is (scripts/setup.sh calls this)."""
    try:
        path = build()
    except NativeBuildError as exc:
        print(f"compiled kernels not built: {exc}\nrecurrent_rl will use its NumPy kernels (slower).")
        return
    _load(path)
    print(f"compiled kernels: {path}")


