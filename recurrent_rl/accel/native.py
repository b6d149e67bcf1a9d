"""Compiled time loops: ``csrc/recurrent.c`` with the torch operators of ``csrc/ops.cpp``, built
with the system's C and C++ compilers against the installed torch, called as
``torch.ops.recurrent_rl``.

Why: the NumPy kernels (``kernels.py``) pay about 1 µs of call overhead per array operation,
some 15 operations per step and layer, forward and backward; for RL's small batches that
overhead, not the arithmetic, is the cost of a recurrent update. The C loops do a step of
stacked cores in one pass with vectorized exp/tanh, so a whole (T, C, B) layer costs one call,
and the C++ operators make that call, its checks and its autograd node cost microseconds.

The library is compiled on first use (``cc -O3 -march=native`` and ``c++`` against torch's
headers, about 15 s), cached in ``$RECURRENT_RL_CACHE`` (default ``~/.cache/recurrent_rl``)
under a name made from the sources, the flags, the compilers, torch's version and the CPU, and
written atomically so concurrent processes (pytest workers, parallel runs) never load a
half-written file. ``scripts/setup.sh`` builds it at install time. Without working compilers,
or with ``RECURRENT_RL_NATIVE=0``, :func:`library` returns None and the NumPy kernels run
instead, with a one-time warning naming the cause.

Float32 only (the dtype of every SB3 policy); float64 goes to the NumPy kernels.
"""

from __future__ import annotations

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

SOURCE = Path(__file__).parent / "csrc" / "recurrent.c"
OPS_SOURCE = Path(__file__).parent / "csrc" / "ops.cpp"
FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-std=gnu99", "-fPIC", "-pthread")
CXX_FLAGS = ("-O2", "-std=c++20", "-fPIC", "-shared", "-pthread", "-w")


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
    return _find("CC", ("cc", "gcc", "clang"))


def cxx_compiler() -> str | None:
    """The C++ compiler: ``$CXX``, else ``c++``, ``g++`` or ``clang++`` on the PATH."""
    return _find("CXX", ("c++", "g++", "clang++"))


def _find(variable: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable]
    for name in names:
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


def _torch_flags() -> list[str]:
    """Headers, libraries and C++ ABI of the installed torch."""
    root = Path(th.__file__).parent
    include, lib = root / "include", root / "lib"
    abi = int(getattr(th._C, "_GLIBCXX_USE_CXX11_ABI", True))
    return [
        f"-I{include}",
        f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        f"-L{lib}",
        "-ltorch",
        "-ltorch_cpu",
        "-lc10",
        f"-Wl,-rpath,{lib}",
    ]


def library_path(cc: str, cxx: str) -> Path:
    key = hashlib.sha256()
    parts = (
        SOURCE.read_bytes(),
        OPS_SOURCE.read_bytes(),
        " ".join(FLAGS + CXX_FLAGS).encode(),
        cc.encode(),
        cxx.encode(),
        th.__version__.encode(),
        platform.machine().encode(),
        _cpu_signature().encode(),
    )
    for part in parts:
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"recurrent-{key.hexdigest()[:16]}.so"


def build(force: bool = False) -> Path:
    """Compile the library into the cache (if not already there) and return its path.

    :raises NativeBuildError: no compiler, or a compiler failed (its output is in the message)
    """
    cc, cxx = compiler(), cxx_compiler()
    if cc is None:
        raise NativeBuildError("no C compiler found (set CC, or install gcc or clang)")
    if cxx is None:
        raise NativeBuildError("no C++ compiler found (set CXX, or install g++ or clang++)")
    path = library_path(cc, cxx)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # compile to temporary names in the same folder, then rename: readers see all or nothing
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    obj = tmp + ".o"
    try:
        steps = [
            (cc, [cc, *FLAGS, "-c", "-o", obj, str(SOURCE)], SOURCE),
            (cxx, [cxx, *CXX_FLAGS, "-o", tmp, str(OPS_SOURCE), obj, *_torch_flags(), "-lm"], OPS_SOURCE),
        ]
        for tool, command, source in steps:
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise NativeBuildError(f"could not run {tool} on {source}: {exc}") from exc
            if result.returncode != 0:
                raise NativeBuildError(f"{tool} failed on {source}:\n{result.stderr.strip()[-2000:]}")
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, obj):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return path


def _load(path: Path) -> Any:
    """Load the library's operators into torch and return their namespace."""
    try:
        th.ops.load_library(str(path))
    except (OSError, RuntimeError) as exc:
        raise NativeBuildError(f"could not load {path}: {exc}") from exc
    return th.ops.recurrent_rl


@functools.cache
def library() -> Any | None:
    """The operators (``torch.ops.recurrent_rl``), or None (disabled, or no compiler: the NumPy
    kernels then run)."""
    if os.environ.get("RECURRENT_RL_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        return _load(build())
    except NativeBuildError as exc:
        warnings.warn(
            f"recurrent_rl: compiled kernels unavailable, using the slower NumPy kernels ({exc}). "
            "Install a C compiler and a C++ compiler (gcc and g++, or clang) for full speed, "
            "or set RECURRENT_RL_NATIVE=0 to silence this.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def available() -> bool:
    return library() is not None


# Below this many (step, column) pairs per core, handing half the cores to the helper thread
# costs more than it saves (measured with benchmarks/kernels.py; see threads_for).
PARALLEL_MIN_ROWS = 64


def threads_for(n_cores: int, rows: int, setting: int | str | None = None) -> int:
    """Threads for one call over ``n_cores`` cores of ``rows`` = T * B rows each: 1 for a single
    core or too little work. ``setting``: the backend's (``CpuKernels(threads=...)``: 1, 2 or
    ``"auto"``); None: the process default, :func:`kernel_threads`."""
    setting = kernel_threads() if setting is None else _valid_threads(setting, "kernel threads")
    if n_cores < 2 or rows < PARALLEL_MIN_ROWS or setting == 1:
        return 1
    if th.get_num_threads() > 1:
        # torch's own thread pool then holds the second core: measured on the core benchmark,
        # the update takes 104 ms per rollout with both against 49 ms with torch on one thread
        if setting == 2:
            _warn_once(
                "recurrent_rl: kernel threads 2 needs torch on one thread (torch.set_num_threads(1)); torch has "
                f"{th.get_num_threads()}, so the compiled layers run on one thread"
            )
        return 1
    return 2 if setting == 2 or usable_cpus() >= 2 else 1


@functools.cache
def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


_THREADS: list[int | str] = []  # set by set_kernel_threads, else read from the environment once


def kernel_threads() -> int | str:
    """How many threads a compiled call may use when its backend does not say
    (``CpuKernels(threads=None)``): what :func:`set_kernel_threads` set, else
    ``RECURRENT_RL_THREADS``, else ``"auto"``. Two threads run the actor's and the critic's cores
    side by side; a call has no more independent halves than that, so 1 and 2 are
    the choices, and ``"auto"`` takes 2 when the process may use two CPUs and torch runs on one
    thread (else 1, silently)."""
    if not _THREADS:
        value = os.environ.get("RECURRENT_RL_THREADS", "auto").strip()
        _THREADS.append(_valid_threads(int(value) if value.isdigit() else value, "RECURRENT_RL_THREADS"))
    return _THREADS[0]


def set_kernel_threads(n: int | str) -> None:
    """Let the compiled layers use ``n`` threads: 1 (everything on the calling thread), 2, or
    ``"auto"`` (2 where the process may use two CPUs and torch is on one thread)."""
    _THREADS[:] = [_valid_threads(n, "kernel threads")]


def _valid_threads(n: Any, what: str) -> int | str:
    if isinstance(n, str) and n == "auto":
        return "auto"
    if isinstance(n, bool) or n not in (1, 2):
        raise ValueError(
            f"{what} must be 1, 2 or 'auto', got {n!r} (2 runs the actor's and critic's memories side by side)"
        )
    return int(n)


KINDS = {"gru": 0, "lstm": 1, "rnn": 2}  # the operators' kind codes (csrc/ops.cpp)


def _operators(name: str) -> Any:
    """``torch.ops.recurrent_rl``, or a RuntimeError saying what to install (callers check
    :func:`available` first; this is for direct calls)."""
    ops = library()
    if ops is None:
        raise RuntimeError(
            f"recurrent_rl.accel.native.{name} needs the compiled library, which is unavailable "
            "(see the RuntimeWarning above); install a C and a C++ compiler, or check available() before calling it"
        )
    return ops


def _code(codes: dict[str, int], value: str, what: str) -> int:
    code = codes.get(value)
    if code is None:
        raise ValueError(f"{what} must be one of {sorted(codes)}, got {value!r}")
    return code


def layer(
    kind: str,
    keep: th.Tensor,
    xs: list[th.Tensor],
    weights: list[th.Tensor],
    h0s: list[th.Tensor],
    c0s: list[th.Tensor] | None = None,
    threads: int | str | None = None,
) -> list[th.Tensor]:
    """One layer of C cores of one kind and size over a (T, B) batch, as one autograd node.

    :param kind: ``"gru"``, ``"lstm"`` or ``"rnn"``
    :param keep: (T, B) float32, 0 where the state is zeroed before the step
    :param xs: per core, the input (T, B, F)
    :param weights: flat, as in ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``: every core's ``w_ih``, then
        every core's ``b_ih``, ``w_hh``, ``b_hh``
    :param h0s: per core, the state entering the batch (B, H); ``c0s`` the LSTM cells
    :param threads: 1, 2 or ``"auto"`` (see :func:`threads_for`); None: the process default
    :return: per core the outputs (T, B, H), then for the LSTM per core the last cells (B, H)
    All tensors float32 on the CPU, the weights C-contiguous (the operator makes ``keep``, the
    inputs and the states contiguous itself); anything else is a ValueError naming the
    tensor's shape and what was expected (the C loops trust their sizes). Gradients flow to
    every input but ``keep`` when grad mode is on.
    """
    ops, code = _operators("layer"), _code(KINDS, kind, "compiled layer: kind")
    rows = xs[0].shape[0] * xs[0].shape[1] if xs and xs[0].dim() >= 2 else 0
    return ops.layer(code, threads_for(len(xs), rows, threads), keep, xs, weights, h0s, c0s or [])


def step(
    kind: str,
    keep: th.Tensor,
    xs: list[th.Tensor],
    weights: list[th.Tensor],
    hs: list[th.Tensor],
    cs: list[th.Tensor] | None = None,
) -> tuple[list[th.Tensor], list[th.Tensor], list[th.Tensor] | None]:
    """One step of every layer of C cores, no autograd: what every rollout step and ``predict``
    call pays for, one operator call (a few microseconds next to the arithmetic).

    :param keep: (B,) float32, 0 where the state is zeroed first; ``xs`` per core (B, F)
    :param weights: per layer, :func:`layer`'s flat order (every core's ``w_ih``, then ``b_ih``,
        ``w_hh``, ``b_hh``), layer after layer
    :param hs: per core the state (L, B, H); ``cs`` the LSTM cells
    :return: per core the output (B, H), per core the next state h (L, B, H), and for the LSTM
        per core the next cells, else None. Checked as in :func:`layer`.
    """
    ops, code = _operators("step"), _code(KINDS, kind, "compiled layer: kind")
    results = ops.step(code, keep, xs, weights, hs, cs or [])
    n = len(xs)
    return results[:n], results[n : 2 * n], (results[2 * n :] if kind == "lstm" else None)


def main() -> None:
    """Build the library now and say where it is (scripts/setup.sh calls this)."""
    try:
        path = build()
    except NativeBuildError as exc:
        print(f"compiled kernels not built: {exc}\nrecurrent_rl will use its NumPy kernels (slower).")
        return
    _load(path)
    print(f"compiled kernels: {path}")
