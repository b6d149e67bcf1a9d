"""Sequence paths through the memory cores, side by side: which is fastest for each core.

Forward + backward of an actor and a critic core over a (T, B) batch with episode starts:
  - compiled: backend cpu-kernels (recurrent_rl/accel/native.py), one C call per layer for both
    cores, resets as masks;
  - compiled, 2 threads: the same with the critic's core on a helper thread (kernel threads 2);
  - numpy:   recurrent_rl/accel/kernels.py's NumPy loops (the fallback without a C compiler);
  - padded:  backend torch, torch modules (oneDNN for LSTM) on the batch cut into zero-padded
    episode segments (the update's path);
  - packed:  the same segments packed (the only torch path that also gives final states).

    python -m benchmarks.kernels [--T 32 --B 8 --H 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch as th

from recurrent_rl.accel import native
from recurrent_rl.accel.backend import CpuKernels
from recurrent_rl.nets.backend import TorchBackend
from recurrent_rl.nets.memory import MemoryCore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--H", type=int, default=64)
    parser.add_argument("--F", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    th.manual_seed(0)
    starts = (th.rand(args.T, args.B) < 0.05).float()
    starts[args.T // 2, 0] = 1.0  # at least one episode start inside the batch
    print(f"T={args.T} B={args.B} H={args.H}: ms per actor+critic forward+backward (median of {args.rounds} rounds)")
    print("| core | compiled | compiled, 2 threads | numpy | padded | packed |\n|---|---:|---:|---:|---:|---:|")
    compiled_available = native.available
    backends = {True: CpuKernels(), False: TorchBackend()}
    for memory in ("gru", "lstm", "rnn"):
        cores = [MemoryCore(memory, args.F, args.H) for _ in range(2)]
        xs = [th.randn(args.T, args.B, args.F, requires_grad=True) for _ in cores]
        states = [c.initial_state(args.B) for c in cores]

        def run(
            use_kernels: bool,
            compiled: bool,
            need_final_state: bool,
            threads: int = 1,
            cores=cores,
            xs=xs,
            states=states,
        ) -> None:
            native.available = compiled_available if compiled else lambda: False  # type: ignore[assignment]
            native.set_kernel_threads(threads)
            outs = backends[use_kernels].forward_cores(cores, xs, states, starts, need_final_state=need_final_state)
            sum(out.sum() for out, _ in outs).backward()

        variants = {
            "compiled": (True, True, True),
            "compiled-2t": (True, True, True, 2),
            "numpy": (True, False, True),
            "padded": (False, False, False),
            "packed": (False, False, True),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):  # interleaved, so background load hits all variants alike
            for name, variant in variants.items():
                start = time.perf_counter()
                for _ in range(10):
                    run(*variant)
                times[name].append((time.perf_counter() - start) / 10 * 1e3)
        row = " | ".join(f"{statistics.median(times[name]):.2f}" for name in variants)
        print(f"| {memory} | {row} |")
    native.available = compiled_available  # type: ignore[assignment]
    native.set_kernel_threads(1)


if __name__ == "__main__":
    main()
