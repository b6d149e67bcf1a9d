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
    page faults show: measured 258 µs for the GRU forward call (actor and critic) with fresh
    buffers against 225 µs with pooled ones, and 371 against 327 µs for the backward. A buffer
    goes back only when no tensor views it any more (the saved arrays
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


@functools.lru_cache(maxsize=64)
def _layout(kind: str, C: int, T: int, B: int, F: int, H: int) -> tuple[tuple[int, ...], int]:
    """Where the saved arrays, then the scratch blocks, of one forward call sit in its buffer:
    their element offsets and the buffer's size. Saved (per kind, each C*T*B*X): GRU prev, rz,
    cand, ghn; LSTM prev_h, prev_c, acts, tanh_c; RNN prev. Scratch, one block per core (the
    cores may run in parallel): GRU gi, wt, g; LSTM wt; RNN wt."""
    G, K = GATES[kind] * H, max(F, H)
    saved = [C * T * B * n for n in {"gru": [H, 2 * H, H, H], "lstm": [H, H, G, H], "rnn": [H]}[kind]]
    scratch = [C * n for n in {"gru": [T * B * G, K * G, B * G], "lstm": [K * G], "rnn": [K * H]}[kind]]
    offsets, total = [], 0
    for n in saved + scratch:
        offsets.append(total)
        total += n
    return tuple(offsets), total


def _fits(t: th.Tensor, shape: tuple[int, ...]) -> bool:
    """What the C loops need of a tensor: this shape, float32, on the CPU, C-contiguous."""
    return t.shape == shape and t.dtype is th.float32 and t.is_cpu and t.is_contiguous()


def _check_all(kind: str, tensors: list[th.Tensor], shape: tuple[int, ...], F: int, H: int) -> None:
    """:func:`_check` for tensors of one expected shape, fast when they pass."""
    for t in tensors:
        if not _fits(t, shape):
            _check(kind, [(t, shape)], F, H)


def layer_forward(
    kind: str, keep: th.Tensor, xs: list[th.Tensor], weights: list[list[th.Tensor]], h0s: list[th.Tensor],
    c0s: list[th.Tensor] | None = None, save: bool = True,
) -> tuple[list[th.Tensor], list[th.Tensor] | None, tuple[Any, ...]]:
    """One layer of C cores of one kind and size over a (T, B) batch, no autograd.

    :param kind: ``"gru"``, ``"lstm"`` or ``"rnn"``
    :param keep: (T, B) float32, 0 where the state is zeroed before the step
    :param xs: per core, the input (T, B, F)
    :param weights: per core, ``[w_ih, b_ih, w_hh, b_hh]`` as in ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``
    :param h0s: per core, the state entering the batch (B, H); ``c0s`` the LSTM cells
    :param save: keep the arrays the backward pass needs (else they live in a scratch buffer)
    :return: per core the outputs (T, B, H), per core the last cells (LSTM) or None, and what
        :meth:`Layer.backward` needs: the pooled buffer holding the saved arrays and their
        element offsets (see :func:`_layout`); empty if not ``save``
    All tensors float32, C-contiguous, on the CPU (checked: the C loops trust their sizes).
    Every rollout step and gradient step pays this function's Python: it keeps to plain ints
    and one C array of pointers.
    """
    lib = library()
    assert lib is not None, "recurrent_rl.native.layer_forward needs the compiled library"
    # the layer's sizes come from its first core's weights; everything else is checked against them
    T, B = xs[0].shape[:2]
    G, F = weights[0][0].shape
    C, H = len(xs), weights[0][2].shape[-1]
    if G != GATES[kind] * H:
        raise ValueError(f"compiled {kind} layer: W_ih has {G} rows, expected {GATES[kind]} x hidden size {H}")
    lstm = kind == "lstm"
    if len(weights) != C or len(h0s) != C or (lstm and (c0s is None or len(c0s) != C)):
        raise ValueError(f"compiled {kind} layer: need inputs, weights and states for each of the {C} cores")
    _check_all(kind, [keep], (T, B), F, H)
    _check_all(kind, xs, (T, B, F), F, H)
    _check_all(kind, h0s + (c0s if lstm else []), (B, H), F, H)  # type: ignore[operator]
    out_all, c_all, saved = _run_forward(lib, kind, threads_for(C, T * B), T, xs, weights, h0s, c0s, keep, save)
    outs = list(out_all.unbind(0))
    return outs, (list(c_all.unbind(0)) if c_all is not None else None), saved


def _run_forward(
    lib: Any, kind: str, threads: int, T: int, xs: list[th.Tensor], weights: list[list[th.Tensor]],
    h0s: list[th.Tensor], c0s: list[th.Tensor] | None, keep: th.Tensor, save: bool,
) -> tuple[th.Tensor, th.Tensor | None, tuple[Any, ...]]:
    """The C forward call of :func:`layer_forward` and :func:`layer_step`, on inputs and states
    already checked (the weights are checked here, by :func:`_weight_pointers`): outputs (C, T, B, H), LSTM last cells (C, B, H) or None, and (buffer, offsets) of
    the saved arrays if ``save`` (else the buffer goes back to the pool)."""
    C, B = len(xs), h0s[0].shape[0]
    (G, F), H = weights[0][0].shape, weights[0][2].shape[-1]
    lstm = kind == "lstm"
    w_ih, b_ih, w_hh, b_hh = _weight_pointers(kind, weights, F, G, H)
    out_all = xs[0].new_empty(C, T, B, H)
    c_all = xs[0].new_empty(C, B, H) if lstm else None
    offsets, size = _layout(kind, C, T, B, F, H)
    buffer = _POOL.take(size)
    base = buffer.data_ptr()
    ptr = [base + 4 * o for o in offsets]
    # one C array: x, h0, out (, c0, c_last) pointers per core; the C side gets addresses into it
    out_base, step = out_all.data_ptr(), 4 * T * B * H
    listed = [t.data_ptr() for t in xs] + [t.data_ptr() for t in h0s] + [out_base + step * c for c in range(C)]
    if lstm:
        listed += [t.data_ptr() for t in c0s] + [c_all.data_ptr() + 4 * B * H * c for c in range(C)]  # type: ignore[union-attr]
    array = (ctypes.c_void_p * len(listed))(*listed)
    x_p, h0_p, out_p, c0_p, cl_p = (ctypes.addressof(array) + 8 * C * i for i in range(5))
    keep_p = keep.data_ptr()
    try:
        if kind == "gru":  # saved: prev, rz, cand, ghn; scratch: gi, wt, g
            lib.gru_forward(threads, T, C, B, F, H, x_p, w_ih, b_ih, w_hh, b_hh, h0_p, keep_p, ptr[4], ptr[5], ptr[6],
                            ptr[0], ptr[1], ptr[2], ptr[3], out_p)  # fmt: skip
        elif lstm:  # saved: prev_h, prev_c, acts, tanh_c; scratch: wt
            lib.lstm_forward(threads, T, C, B, F, H, x_p, w_ih, b_ih, w_hh, b_hh, h0_p, c0_p, keep_p, ptr[4], ptr[0],
                             ptr[1], ptr[2], ptr[3], out_p, cl_p)  # fmt: skip
        else:  # saved: prev; scratch: wt
            lib.rnn_forward(threads, T, C, B, F, H, x_p, w_ih, b_ih, w_hh, b_hh, h0_p, keep_p, ptr[1], ptr[0], out_p)
    finally:
        if not save:
            _POOL.give(buffer)
    return out_all, c_all, ((buffer, offsets) if save else ())


def _check(kind: str, expected: list[tuple[th.Tensor, tuple[int, ...]]], F: int, H: int) -> None:
    for t, shape in expected:
        if t.shape != shape or t.dtype is not th.float32 or not t.is_cpu or not t.is_contiguous():
            raise ValueError(
                f"compiled {kind} layer: expected a contiguous float32 CPU tensor of shape {shape}, got "
                f"{tuple(t.shape)} {t.dtype} on {t.device} (input features {F}, hidden size {H})"
            )


def layer_step(
    kind: str, keep: th.Tensor, xs: list[th.Tensor], weights: list[list[th.Tensor]], h0s: list[th.Tensor],
    c0s: list[th.Tensor] | None = None,
) -> tuple[th.Tensor, th.Tensor | None]:
    """One step (T = 1) of one layer of C cores, no autograd: what every rollout step and
    ``predict`` call pays for. Same call and checks as :func:`layer_forward` with ``save=False``,
    in fewer Python steps: measured in a rollout, the step's cost next to the compiled work
    is mostly the Python around it (about 110 µs a step in place against 66 µs in a tight loop).

    :param keep: (B,) float32; ``xs`` per core (B, F); ``h0s`` and ``c0s`` per core (B, H)
    :return: the outputs (C, 1, B, H), and for the LSTM the last cells (C, B, H)
    """
    lib = library()
    assert lib is not None, "recurrent_rl.native.layer_step needs the compiled library"
    # sizes from the first core's weights and the resets, as in layer_forward
    C, lstm = len(xs), kind == "lstm"
    w_ih0, w_hh0 = weights[0][0], weights[0][2]
    ok = w_ih0.dim() == 2 and w_hh0.dim() == 2 and keep.dim() == 1
    G, F = w_ih0.shape if ok else (-1, -1)
    H, B = (w_hh0.shape[-1], keep.shape[0]) if ok else (-1, -1)
    ok = (
        ok and G == GATES[kind] * H and keep.dtype is th.float32 and keep.is_contiguous() and len(weights) == C
        and len(h0s) == C
        and (not lstm or (c0s is not None and len(c0s) == C))
    )  # fmt: skip
    ok = ok and all(_fits(t, (B, F)) for t in xs) and all(_fits(t, (B, H)) for t in h0s + (c0s if lstm else []))  # type: ignore[operator]
    if not ok:  # let the general path say what is wrong
        outs, c_lasts, _ = layer_forward(kind, keep.reshape(1, -1), [x.unsqueeze(0) for x in xs], weights, h0s, c0s,
                                         save=False)  # fmt: skip
        return th.stack(outs), (th.stack(c_lasts) if c_lasts is not None else None)
    out_all, c_all, _ = _run_forward(lib, kind, 1, 1, xs, weights, h0s, c0s, keep, save=False)
    return out_all, c_all


class Layer(th.autograd.Function):
    """One layer of stacked cores as one autograd node (see :func:`layer_forward`).

    ``Layer.apply(kind, keep, n_cores, *xs, *w_ih, *b_ih, *w_hh, *b_hh, *h0s[, *c0s])`` returns the
    per-core outputs (T, B, H), then for the LSTM the per-core last cells (B, H).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, kind: str, keep: th.Tensor, n: int, *tensors: th.Tensor) -> tuple[th.Tensor, ...]:  # type: ignore[override]
        t = [x.contiguous() for x in tensors]  # (no graph is recorded inside forward)
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
        keep, xs, w_ih, w_hh, outs, (buffer, offsets) = ctx.arrays
        del ctx.arrays
        kind, n = ctx.kind, ctx.n
        T, B, F = xs[0].shape
        H = outs[0].shape[-1]
        G, K = GATES[kind] * H, max(F, H)
        new = xs[0].new_empty
        d_out = [g.contiguous() for g in grads[:n]]
        dxs = [new(T, B, F) if need else None for need in ctx.needs_dx]
        dw_ih, db_ih, dw_hh, db_hh = ([new(G, F) for _ in range(n)], [new(G) for _ in range(n)],
                                      [new(G, H) for _ in range(n)], [new(G) for _ in range(n)])  # fmt: skip
        dh0s = [new(B, H) for _ in range(n)]
        lstm = kind == "lstm"
        dc0s = [new(B, H) for _ in range(n)] if lstm else []
        # one C array of per-core pointers: xs, w_ih, w_hh, d_out, dx, dw_ih, db_ih, dw_hh, db_hh, dh0
        # (, dc_last, dc0 for the LSTM, or outs for the RNN); the C side gets addresses into it
        groups: list[list[th.Tensor | None]] = [xs, w_ih, w_hh, d_out, dxs, dw_ih, db_ih, dw_hh, db_hh, dh0s]  # type: ignore[list-item]
        if lstm:
            groups += [[g.contiguous() for g in grads[n:]], dc0s]  # type: ignore[list-item]
        elif kind == "rnn":
            groups.append(outs)  # type: ignore[arg-type]
        array = (ctypes.c_void_p * (n * len(groups)))(*(t.data_ptr() if t is not None else None for g in groups for t in g))
        at = [ctypes.addressof(array) + 8 * n * i for i in range(len(groups))]
        scratch = {"gru": 2 * T * B * G, "lstm": T * B * G, "rnn": T * B * H}[kind]
        work = _POOL.take(n * (K * G + B * H + scratch))  # scratch: one block per core
        tr, dh, rest = (work.data_ptr() + 4 * o for o in (0, n * K * G, n * (K * G + B * H)))
        saved = [buffer.data_ptr() + 4 * o for o in offsets]
        common = (threads_for(n, T * B), T, n, B, F, H, at[0], at[1], at[2], keep.data_ptr())
        grads_out = at[4:10]
        if kind == "gru":  # saved: prev, rz, cand, ghn; scratch: ggi, ggh (each n*T*B*G), tr, dh
            lib.gru_backward(*common, *saved[:4], at[3], rest, rest + 4 * n * T * B * G, tr, dh, *grads_out)
        elif lstm:  # saved: prev_h, prev_c, acts, tanh_c; scratch: gp (n*T*B*G), tr, dh
            lib.lstm_backward(*common, *saved[:4], at[3], at[10], rest, tr, dh, *grads_out, at[11])
        else:  # saved: prev; scratch: ga (n*T*B*H), tr, dh
            lib.rnn_backward(*common, saved[0], at[10], at[3], rest, tr, dh, *grads_out)
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


