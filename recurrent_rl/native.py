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
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-std=gnu99", "-fPIC", "-shared")
# (name, number of pointer arguments after the four sizes T, C, B, H)
_FUNCTIONS = {
    "gru_forward": 11,
    "gru_backward": 11,
    "lstm_forward": 11,
    "lstm_backward": 11,
    "rnn_forward": 6,
    "rnn_backward": 7,
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
        fn.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * n_pointers
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


def _p(t: th.Tensor) -> int:
    return t.data_ptr()


def _c(t: th.Tensor) -> th.Tensor:
    return t.detach().contiguous()


def _weight_grad(grad_pre: th.Tensor, prev: th.Tensor) -> th.Tensor:
    """sum over T, B of grad_pre^T prev: (C, T, B, G), (C, T, B, H) -> (C, G, H), one batched matmul."""
    C, T, B, G = grad_pre.shape
    return th.bmm(grad_pre.view(C, T * B, G).transpose(1, 2), prev.view(C, T * B, -1))


class GRU(th.autograd.Function):
    """gi (C, T, B, 3H) = x W_ih^T + b_ih; h0 (C, B, H); keep (T, B); w_hh (C, 3H, H); b_hh (C, 3H)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, gi: th.Tensor, h0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor, b_hh: th.Tensor
    ) -> th.Tensor:
        gi, h0, keep, w_hh, b_hh = _c(gi), _c(h0), _c(keep), _c(w_hh), _c(b_hh)
        C, T, B, G = gi.shape
        H = G // 3
        w_t = w_hh.transpose(1, 2).contiguous()
        prev, cand, ghn, out = (gi.new_empty(C, T, B, H) for _ in range(4))
        rz = gi.new_empty(C, T, B, 2 * H)
        scratch = gi.new_empty(B, G)
        lib = library()
        assert lib is not None
        lib.gru_forward(T, C, B, H, _p(gi), _p(h0), _p(keep), _p(w_t), _p(b_hh), _p(prev), _p(rz), _p(cand),
                        _p(ghn), _p(out), _p(scratch))  # fmt: skip
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev, rz, cand, ghn)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        keep, w_hh = ctx.saved_tensors
        prev, rz, cand, ghn = ctx.arrays
        del ctx.arrays
        d_out = _c(grad_out)
        C, T, B, H = cand.shape
        grad_gi = d_out.new_empty(C, T, B, 3 * H)
        grad_gh = d_out.new_empty(C, T, B, 3 * H)
        dh0, scratch = d_out.new_empty(C, B, H), d_out.new_empty(C, B, H)
        library().gru_backward(T, C, B, H, _p(d_out), _p(keep), _p(w_hh), _p(prev), _p(rz), _p(cand),  # type: ignore[union-attr]
                               _p(ghn), _p(grad_gi), _p(grad_gh), _p(dh0), _p(scratch))  # fmt: skip
        return grad_gi, dh0, None, _weight_grad(grad_gh, prev), grad_gh.sum(dim=(1, 2))


class LSTM(th.autograd.Function):
    """gx (C, T, B, 4H) = x W_ih^T + b_ih + b_hh (gates i f g o); h0, c0 (C, B, H); keep (T, B);
    w_hh (C, 4H, H). Returns the outputs h (C, T, B, H) and the last cell (C, B, H)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, gx: th.Tensor, h0: th.Tensor, c0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        gx, h0, c0, keep, w_hh = _c(gx), _c(h0), _c(c0), _c(keep), _c(w_hh)
        C, T, B, G = gx.shape
        H = G // 4
        w_t = w_hh.transpose(1, 2).contiguous()
        prev_h, prev_c, tanh_c, out = (gx.new_empty(C, T, B, H) for _ in range(4))
        acts = gx.new_empty(C, T, B, G)
        c_last = gx.new_empty(C, B, H)
        library().lstm_forward(T, C, B, H, _p(gx), _p(h0), _p(c0), _p(keep), _p(w_t), _p(prev_h), _p(prev_c),  # type: ignore[union-attr]
                               _p(acts), _p(tanh_c), _p(out), _p(c_last))  # fmt: skip
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev_h, prev_c, acts, tanh_c)
        return out, c_last

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: th.Tensor, grad_c_last: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        keep, w_hh = ctx.saved_tensors
        prev_h, prev_c, acts, tanh_c = ctx.arrays
        del ctx.arrays
        d_out, dc_last = _c(grad_out), _c(grad_c_last)
        C, T, B, H = tanh_c.shape
        grad_gx = d_out.new_empty(C, T, B, 4 * H)
        dh0, dc0, scratch = (d_out.new_empty(C, B, H) for _ in range(3))
        library().lstm_backward(T, C, B, H, _p(d_out), _p(dc_last), _p(keep), _p(w_hh), _p(prev_c), _p(acts),  # type: ignore[union-attr]
                                _p(tanh_c), _p(grad_gx), _p(dh0), _p(dc0), _p(scratch))  # fmt: skip
        return grad_gx, dh0, dc0, None, _weight_grad(grad_gx, prev_h)


class RNN(th.autograd.Function):
    """gx (C, T, B, H) = x W_ih^T + b_ih + b_hh; h0 (C, B, H); keep (T, B); w_hh (C, H, H)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, gx: th.Tensor, h0: th.Tensor, keep: th.Tensor, w_hh: th.Tensor
    ) -> th.Tensor:
        gx, h0, keep, w_hh = _c(gx), _c(h0), _c(keep), _c(w_hh)
        C, T, B, H = gx.shape
        w_t = w_hh.transpose(1, 2).contiguous()
        prev, out = gx.new_empty(C, T, B, H), gx.new_empty(C, T, B, H)
        library().rnn_forward(T, C, B, H, _p(gx), _p(h0), _p(keep), _p(w_t), _p(prev), _p(out))  # type: ignore[union-attr]
        ctx.save_for_backward(keep, w_hh)
        ctx.arrays = (prev, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: th.Tensor) -> tuple[th.Tensor | None, ...]:  # type: ignore[override]
        keep, w_hh = ctx.saved_tensors
        prev, out = ctx.arrays
        del ctx.arrays
        d_out = _c(grad_out)
        C, T, B, H = out.shape
        grad_gx = d_out.new_empty(C, T, B, H)
        dh0, scratch = d_out.new_empty(C, B, H), d_out.new_empty(C, B, H)
        library().rnn_backward(T, C, B, H, _p(d_out), _p(keep), _p(w_hh), _p(out), _p(grad_gx), _p(dh0),  # type: ignore[union-attr]
                               _p(scratch))  # fmt: skip
        return grad_gx, dh0, None, _weight_grad(grad_gx, prev)


def main() -> None:
    """``python -m recurrent_rl.native``: build the library now (scripts/setup.sh does this)."""
    try:
        path = build()
    except NativeBuildError as exc:
        print(f"compiled kernels not built: {exc}\nrecurrent_rl will use its NumPy kernels (slower).")
        return
    _load(path)
    print(f"compiled kernels: {path}")


if __name__ == "__main__":
    main()
