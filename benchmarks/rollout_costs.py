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

It then times, on the same models and in tight loops, the work ours has that the MLP has not:
the memory layers' forward and backward over a minibatch (the compiled layers and their calls),
the heads' first layers reading the 64-wide memory output (with its input gradient) instead of 4
observation entries, and the memory's rollout step. The "MLP + work" column is the ratio ours
would reach if everything else cost what it costs SB3's MLP PPO. Its parts are the fastest of
many timed calls, so it errs high; ours can still pass it, because some of what both do costs
ours less (the action distribution: recurrent_rl/distributions.py; the optimizer step:
recurrent_rl/optim.py).
"""

from __future__ import annotations

import argparse
import time

import torch as th

from benchmarks.core import CONTENDERS, LABELS, make_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--contenders",
        default="ours-gru-2t,sb3-mlp",
        help=f"comma-separated, the last is the reference; from {', '.join(CONTENDERS)}",
    )
    parser.add_argument("--rounds", type=int, default=15, help="rounds; each times 2 rollouts per contender")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or len(names) < 2:
        parser.error(f"--contenders needs at least two of {', '.join(CONTENDERS)}; got {args.contenders!r}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    from stable_baselines3.common.callbacks import CallbackList

    from recurrent_rl.accel import native

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
    extra = {}
    for name in names:
        if name.startswith("ours"):
            native.set_kernel_threads(2 if name.endswith("-2t") else 1)
            th.set_num_threads(1)
            extra[name] = extra_arithmetic(models[name], models[names[-1]])
    ref = names[-1]
    ref_total = sum(best[ref])
    n_grad = models[ref].n_epochs * (models[ref].n_steps * models[ref].n_envs // models[ref].batch_size)
    print(
        f"\nms per rollout of {models[ref].n_steps * models[ref].n_envs} env steps and its {n_grad} gradient steps "
        f"(best of {2 * args.rounds})\n"
    )
    print(f"| contender | collection | update | update per gradient step | total | x {LABELS[ref]} | MLP + work |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    n_steps = models[ref].n_steps
    for name in names:
        collect, update = best[name]
        ceiling = "-"
        if name in extra:
            layers, heads, step = extra[name]
            ceiling = f"{ref_total / (ref_total + n_grad * (layers + heads) + n_steps * step):.2f}"
        print(
            f"| {LABELS[name]} | {collect:.1f} | {update:.1f} | {update / n_grad:.2f} | {collect + update:.1f} | "
            f"{ref_total / (collect + update):.2f} | {ceiling} |"
        )
    for name, (layers, heads, step) in extra.items():
        print(
            f"\n{LABELS[name]}: memory layers {layers * 1e3:.0f} µs per gradient step (forward + backward), heads' "
            f"extra width {heads * 1e3:.0f} µs, memory step {step * 1e3:.0f} µs per rollout step: "
            f"{n_grad * (layers + heads) + n_steps * step:.1f} ms per rollout of work the MLP has not"
        )


def _best_ms(fn, calls: int = 300) -> float:
    """Milliseconds of the fastest of ``calls`` timed calls of ``fn`` (after a few untimed ones):
    a lower bound on its cost, so the ratio built from it is an upper bound."""
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def extra_arithmetic(ours, mlp) -> tuple[float, float, float]:
    """(ms) the work ``ours`` has that ``mlp`` has not, per gradient step and per rollout step:
    the compiled layers forward and backward over one minibatch of chunks (on the kernel threads
    already set), the heads' first layers on the memory's 64-wide output (input gradient
    included) minus the MLP's on the observations, and one memory step for all envs."""
    policy = ours.policy
    backend = policy._backend  # the path ours takes: forward_cores, step_cores
    cores = [policy.actor_memory] + ([policy.critic_core] if policy.critic_core is not None else [])
    T, B = ours.sequence_length, ours.batch_size // ours.sequence_length
    F, H = policy.features_dim, policy.hidden_size
    xs = [th.randn(T, B, F) for _ in cores]
    states = [core.initial_state(B) for core in cores]
    starts = th.zeros(T, B)
    params = [p for core in cores for p in core.parameters()]

    def layers():
        outs = backend.forward_cores(cores, xs, states, starts, need_final_state=False)
        th.autograd.grad(sum(out.sum() for out, _ in outs), params)

    rows = T * B
    latent = th.randn(rows, H, requires_grad=True)
    ours_heads = [policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net]
    obs = th.randn(rows, mlp.policy.features_dim)
    mlp_heads = [mlp.policy.mlp_extractor.policy_net, mlp.policy.mlp_extractor.value_net]

    def heads(modules, x):
        def run():  # both policies run SB3's heads module by module
            weights = [p for m in modules for p in m.parameters()]
            inputs = weights + ([x] if x.requires_grad else [])
            outs = [m(x) for m in modules]
            th.autograd.grad(sum(out.sum() for out in outs), inputs)

        return run

    n_envs = ours.n_envs
    step_xs = [th.randn(n_envs, F) for _ in cores]
    step_states = [core.initial_state(n_envs) for core in cores]

    def step():
        with th.no_grad():
            backend.step_cores(cores, step_xs, step_states, th.zeros(n_envs))

    heads_extra = _best_ms(heads(ours_heads, latent)) - _best_ms(heads(mlp_heads, obs))
    return _best_ms(layers), max(heads_extra, 0.0), _best_ms(step, calls=1000)


if __name__ == "__main__":
    main()
