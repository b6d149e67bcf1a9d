"""Where a rollout's time goes: collection and update, ours against SB3's MLP PPO, side by side.

Same settings as ``benchmarks.core`` (the zoo's CartPoleNoVel-v1 RecurrentPPO settings: 8 envs,
n_steps 32, one minibatch of 256, 20 epochs). All contenders live in one process and are timed
in turn, rollout by rollout: ``collect_rollouts`` (256 env steps) and ``train`` (20 gradient
steps) separately, best of ``--rounds`` x 2 each, so a slow moment of the machine hits everyone
and the minimum shows what each costs when nothing interferes.

    python -m benchmarks.rollout_costs                       # ours GRU, 2 kernel threads, vs MLP
    python -m benchmarks.rollout_costs --contenders ours-lstm,sb3-mlp --rounds 20

Time one of ours per run: with two of ours in the process (say GRU on 1 and on 2 kernel
threads) both measured slower, 2 kernel threads most (77 against 67 ms per rollout, same day).
"""

from __future__ import annotations

import argparse
import time

import torch as th

from benchmarks.core import CONTENDERS, LABELS, make_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contenders", default="ours-gru-2t,sb3-mlp",
                        help=f"comma-separated, the last is the reference; from {', '.join(CONTENDERS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=15, help="rounds; each times 2 rollouts per contender")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or len(names) < 2:
        parser.error(f"--contenders needs at least two of {', '.join(CONTENDERS)}; got {args.contenders!r}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    from stable_baselines3.common.callbacks import CallbackList

    from recurrent_rl import native

    models, callbacks = {}, {}
    for name in names:
        models[name] = make_model(name, seed=0)
        models[name].learn(1024)  # warm-up: lazy inits, the optimizer's state, the kernel library
        callbacks[name] = CallbackList([])
        callbacks[name].init_callback(models[name])
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for _ in range(args.rounds):
        for name in names:
            model, base = models[name], name.removesuffix("-2t")
            native.set_kernel_threads(2 if name.endswith("-2t") and base.startswith("ours") else 1)
            th.set_num_threads(2 if name.endswith("-2t") and base == "sb3-mlp" else 1)
            for _ in range(2):
                start = time.perf_counter()
                model.collect_rollouts(model.env, callbacks[name], model.rollout_buffer, model.n_steps)
                middle = time.perf_counter()
                model.train()
                times[name][0].append(middle - start)
                times[name][1].append(time.perf_counter() - middle)

    best = {name: (min(c) * 1e3, min(t) * 1e3) for name, (c, t) in times.items()}
    ref = names[-1]
    ref_total = sum(best[ref])
    n_grad = models[ref].n_epochs * (models[ref].n_steps * models[ref].n_envs // models[ref].batch_size)
    print(f"\nms per rollout of {models[ref].n_steps * models[ref].n_envs} env steps and its {n_grad} gradient steps "
          f"(best of {2 * args.rounds})\n")  # fmt: skip
    print(f"| contender | collection | update | update per gradient step | total | x {LABELS[ref]} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        collect, update = best[name]
        print(f"| {LABELS[name]} | {collect:.1f} | {update:.1f} | {update / n_grad:.2f} | {collect + update:.1f} | "
              f"{ref_total / (collect + update):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
