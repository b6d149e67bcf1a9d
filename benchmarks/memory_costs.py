"""Update cost of each memory core against the sequence length, side by side in one run.

Forward + backward of an actor and a critic core (the update's work per gradient step) over a
``(T, B)`` batch with episode starts (about one every 50 steps), for every core: gru and lstm
through the compiled layers (backend cpu-kernels) and through torch (backend torch), mingru and
minlstm and ffm with the compiled scan (cpu-kernels) and the associative scan in torch (torch),
and transformer (plain torch on every backend). Variants are interleaved round by round,
and each figure is the median; beside it, the cost per sequence step relative to the smallest T.

    python -m benchmarks.memory_costs                          # T 32 128 512 1024, B 8 64, H 64 256
    python -m benchmarks.memory_costs --T 32 512 --B 8 --H 64  # a part of the grid
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch as th

from recurrent_rl.accel.backend import CpuKernels
from recurrent_rl.nets.backend import TorchBackend
from recurrent_rl.nets.memory import MEMORIES, MemoryCore

VARIANTS = {  # name -> (memory, backend)
    "gru compiled": ("gru", "cpu-kernels"),
    "gru torch": ("gru", "torch"),
    "lstm compiled": ("lstm", "cpu-kernels"),
    "lstm torch": ("lstm", "torch"),
    "mingru compiled": ("mingru", "cpu-kernels"),
    "mingru torch": ("mingru", "torch"),
    "minlstm compiled": ("minlstm", "cpu-kernels"),
    "minlstm torch": ("minlstm", "torch"),
    "transformer": ("transformer", "torch"),
    "ffm compiled": ("ffm", "cpu-kernels"),
    "ffm torch": ("ffm", "torch"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[32, 128, 512, 1024])
    parser.add_argument("--B", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--H", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--F", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds of calls per variant and round (at least one call)"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    th.manual_seed(0)
    backends = {"cpu-kernels": CpuKernels(), "torch": TorchBackend()}
    variants = [v for v in args.variants if VARIANTS[v][0] in MEMORIES]
    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, `python -m benchmarks.memory_costs {command}`".rstrip())
    print(
        "ms per actor + critic forward + backward (median of rounds); "
        "in brackets: per sequence step, relative to the smallest T"
    )
    print("| B | H | T | " + " | ".join(variants) + " |\n|---|---|---|" + "---:|" * len(variants))
    for B in args.B:
        for H in args.H:
            first: dict[str, float] = {}
            for T in args.T:
                starts = (th.rand(T, B) < 0.02).float()
                runs = {}
                for name in variants:
                    memory, backend = VARIANTS[name]
                    cores = [MemoryCore(memory, args.F, H) for _ in range(2)]
                    xs = [th.randn(T, B, args.F) for _ in cores]
                    states = [core.initial_state(B) for core in cores]
                    params = [p for core in cores for p in core.parameters()]

                    def run(
                        cores=cores, xs=xs, states=states, starts=starts, params=params, backend=backends[backend]
                    ) -> None:
                        outs = backend.forward_cores(cores, xs, states, starts, need_final_state=False)
                        th.autograd.grad(sum(out.sum() for out, _ in outs), params)

                    run()  # warm-up
                    runs[name] = run
                times: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(args.rounds):  # interleaved, so background load hits all variants alike
                    for name, run in runs.items():
                        calls, start = 0, time.perf_counter()
                        while calls == 0 or time.perf_counter() - start < args.budget / args.rounds:
                            run()
                            calls += 1
                        times[name].append((time.perf_counter() - start) / calls * 1e3)
                cells = []
                for name in variants:
                    ms = statistics.median(times[name])
                    per_step = ms / T
                    first.setdefault(name, per_step)
                    cells.append(f"{ms:.2f} ({per_step / first[name]:.2f})")
                print(f"| {B} | {H} | {T} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
