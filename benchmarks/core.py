"""Core benchmark: ours (GRU, LSTM) against sb3-contrib's RecurrentPPO and SB3's MLP PPO.

Settings: rl-baselines3-zoo's tuned RecurrentPPO hyperparameters for CartPoleNoVel-v1 (8 envs,
n_steps 32, batch 256, 20 epochs, gae_lambda 0.8, gamma 0.98, linear lr 1e-3 and clip 0.2,
hidden 64, separate critic memory, heads [64], ReLU, ortho_init off, VecNormalize).

Everything is measured in one run, side by side, one torch thread per process:
  1. training throughput (env-steps/s, end to end, learn() only); ours with the CPU speed
     backend (``backend="cpu-kernels"``, what the default "auto" takes on a CPU) on one kernel
     thread and on two (``-2t``: actor and critic memories side by side, same results;
     what the default kernel threads "auto" takes on a machine with two CPUs), ours with
     ``backend="torch"`` (``-torch``: plain torch and SB3), and SB3's MLP PPO also with two torch
     threads, to show what a second core gives each; with ``--parts``, also the speed backend
     with one of its parts left out (``-no-memory``, ``-no-optimizer``,
     ``-no-distributions``: what each part buys);
  2. learning: deterministic evaluation return at 100k steps over several seeds;
  3. single-env ``predict`` latency per step;
  4. rollout buffer memory.

    python -m benchmarks.core                  # everything (about 17 min on 2 cores)
    python -m benchmarks.core --skip-learning  # throughput, latency, memory only (~6 min)
    python -m benchmarks.core --skip-learning --parts --repeats 3  # what each part of the speed layer buys
    python -m benchmarks.core --skip-learning --cores mingru minlstm transformer  # the newer memories too
    python -m benchmarks.core --skip-learning --long --cores mingru  # whole 512-step rollouts per chunk
    python -m benchmarks.core --skip-learning --long --cores ffm --torch-scan  # ffm, compiled scan or torch's
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch as th

ENV_ID = "pomdp/CartPoleNoVel-v1"
SETTINGS = dict(n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, ent_coef=0.0)
HEADS = dict(ortho_init=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[64], vf=[64]))
CONTENDERS = (
    "ours-gru-2t",
    "ours-lstm-2t",
    "ours-gru",
    "ours-lstm",
    "ours-gru-torch",
    "ours-lstm-torch",
    "sb3-contrib-lstm",
    "sb3-mlp",
    "sb3-mlp-2t",
)
PARTS = ("memory", "optimizer", "distributions")  # recurrent_rl.accel.backend.PARTS
ABLATIONS = tuple(f"ours-gru-2t-no-{part}" for part in PARTS)
LABELS = {
    "ours-gru": "ours, GRU, cpu-kernels, 1 kernel thread",
    "ours-lstm": "ours, LSTM, cpu-kernels, 1 kernel thread",
    "ours-gru-2t": "ours, GRU, cpu-kernels, 2 kernel threads (default here)",
    "ours-lstm-2t": "ours, LSTM, cpu-kernels, 2 kernel threads (default here)",
    "ours-gru-torch": "ours, GRU, backend torch",
    "ours-lstm-torch": "ours, LSTM, backend torch",
    "sb3-contrib-lstm": "sb3-contrib RecurrentPPO (LSTM)",
    "sb3-mlp": "SB3 PPO, MLP (no memory)",
    "sb3-mlp-2t": "SB3 PPO, MLP, 2 torch threads",
    **{name: f"ours, GRU, cpu-kernels without {name.rsplit('-no-', 1)[1]}, 2 kernel threads" for name in ABLATIONS},
    **{
        f"ours-{core}-2t": f"ours, {core}, default backend, 2 kernel threads"
        for core in ("mingru", "minlstm", "ffm", "transformer")
    },
    **{
        f"ours-{core}-2t-torch": f"ours, {core}, backend torch (associative scan)"
        for core in ("mingru", "minlstm", "ffm")
    },
}
# --long: one 512-step chunk per env and rollout (sequence_length 512), the whole rollout one minibatch
LONG = dict(n_steps=512, batch_size=4096)


LONG_RUN = False  # set by --long (module level, so the learning workers' make_model sees it too)


def linear(start: float):
    return lambda progress: start * progress


def make_model(name: str, seed: int, n_envs: int = 8):
    """Build one contender on a fresh VecNormalize(CartPoleNoVel) env (and set its threads)."""
    from recurrent_rl.accel import native

    name, _, without = name.partition("-no-")  # an ablation: the speed backend without one part
    torch_backend = name.endswith("-torch")
    name = name.removesuffix("-torch")
    two_threads = name.endswith("-2t")
    name = name.removesuffix("-2t")
    th.set_num_threads(2 if two_threads and name == "sb3-mlp" else 1)
    native.set_kernel_threads(2 if two_threads and name.startswith("ours") else 1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    import recurrent_rl.envs  # noqa: F401  registers pomdp/

    # the zoo gives VecNormalize the algorithm's discount (rl_zoo3 exp_manager: "Use the same discount
    # factor as for the algorithm"), not its default 0.99
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=n_envs, seed=seed), gamma=SETTINGS["gamma"])
    common: dict[str, Any] = dict(
        seed=seed, device="cpu", learning_rate=linear(1e-3), clip_range=linear(0.2), **SETTINGS
    )
    if LONG_RUN:
        common.update(LONG)
    common["batch_size"] = min(common["batch_size"], common["n_steps"] * n_envs)
    if name.startswith("ours"):
        from recurrent_rl import RecurrentPPO
        from recurrent_rl.accel.backend import CpuKernels

        memory = name.split("-")[1]
        backend: Any = "torch" if torch_backend else "cpu-kernels"
        if without:
            backend = CpuKernels(parts=[part for part in PARTS if part != without])
        kwargs = dict(memory=memory, hidden_size=64, critic_memory="separate", backend=backend, **HEADS)
        return RecurrentPPO("MlpGruPolicy", env, policy_kwargs=kwargs, **common)
    if name == "sb3-contrib-lstm":
        from sb3_contrib import RecurrentPPO as ContribRecurrentPPO

        kwargs = dict(lstm_hidden_size=64, enable_critic_lstm=True, **HEADS)
        return ContribRecurrentPPO("MlpLstmPolicy", env, policy_kwargs=kwargs, **common)
    if name == "sb3-mlp":
        return PPO("MlpPolicy", env, policy_kwargs=HEADS, **common)
    raise ValueError(name)


def throughput(name: str, steps: int, seed: int) -> float:
    """Env-steps/s of ``steps`` training steps after a warm-up."""
    model = make_model(name, seed=seed)
    model.learn(2 * 256)  # warm-up: first rollouts, lazy inits
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def evaluate(model, episodes: int = 20, seed: int = 10_000) -> float:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    eval_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=seed), training=False, norm_reward=False)
    eval_env.obs_rms = model.get_env().obs_rms
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
    return float(mean)


def learning_run(args: tuple[str, int, int]) -> tuple[str, int, float]:
    name, seed, steps = args
    model = make_model(name, seed)
    model.learn(steps)
    return name, seed, evaluate(model)


def predict_latency(name: str, calls: int = 3000) -> float:
    """Microseconds per single-env ``predict`` call, carrying the state."""
    model = make_model(name, seed=0, n_envs=1)
    obs = model.get_env().reset()
    state, start = None, np.ones(1, dtype=bool)
    for _ in range(100):
        _, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
    t0 = time.perf_counter()
    for _ in range(calls):
        _, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
        start = np.zeros(1, dtype=bool)
    return (time.perf_counter() - t0) / calls * 1e6


def buffer_bytes(name: str) -> int:
    """Bytes of the filled rollout buffer (arrays and stored memory states)."""
    model = make_model(name, seed=0)
    model.learn(256)
    buffer = model.rollout_buffer
    if hasattr(buffer, "nbytes"):
        return int(buffer.nbytes())
    return int(sum(v.nbytes for v in vars(buffer).values() if isinstance(v, np.ndarray)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short measurements rather than a few long ones: this machine has slow spells of tens
    # of seconds (SB3's MLP PPO measured 3023-5208 env-steps/s within one run), and the best of
    # many interleaved measurements is the one a spell missed, for every contender alike.
    parser.add_argument("--steps", type=int, default=8_192, help="training steps per throughput measurement")
    parser.add_argument(
        "--repeats", type=int, default=12, help="throughput measurements per contender, interleaved (best kept)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per memory type for the learning check")
    parser.add_argument("--learning-steps", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="parallel processes for the learning runs")
    parser.add_argument("--skip-learning", action="store_true")
    parser.add_argument("--only-learning", action="store_true", help="skip throughput, latency and memory")
    parser.add_argument("--parts", action="store_true", help="also the speed backend with each part left out")
    parser.add_argument(
        "--cores",
        nargs="*",
        default=[],
        choices=["mingru", "minlstm", "ffm", "transformer"],
        help="also these memory cores (default backend, 2 kernel threads)",
    )
    parser.add_argument(
        "--torch-scan",
        action="store_true",
        help="also the scan cores of --cores (mingru, minlstm, ffm) on backend torch: what the compiled scan buys",
    )
    parser.add_argument("--long", action="store_true", help="n_steps 512, batch 4096: one 512-step chunk per env")
    args = parser.parse_args(argv)
    global LONG_RUN
    LONG_RUN = args.long
    th.set_num_threads(1)
    import platform
    import subprocess

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), platform.processor())
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu}, torch {th.__version__}, "
        f"`python -m benchmarks.core {' '.join(argv if argv is not None else __import__('sys').argv[1:])}`",
        flush=True,
    )
    contenders = CONTENDERS + (ABLATIONS if args.parts else ()) + tuple(f"ours-{core}-2t" for core in args.cores)
    if args.torch_scan:
        contenders += tuple(f"ours-{core}-2t-torch" for core in args.cores if core != "transformer")
    rows: dict[str, dict[str, Any]] = {name: {} for name in contenders}
    if args.only_learning:
        jobs = [(name, seed, args.learning_steps) for name in ("ours-gru", "ours-lstm") for seed in range(args.seeds)]
        with ProcessPoolExecutor(args.workers) as pool:
            for name, seed, score in pool.map(learning_run, jobs):
                print(f"{name} seed {seed}: {score:.1f}", flush=True)
        return
    for repeat in range(args.repeats):  # interleaved, so a slow moment of the machine hits everyone
        for name in contenders:
            steps = args.steps if name != "sb3-contrib-lstm" else max(args.steps // 4, 2048)
            measured = throughput(name, steps, seed=repeat)
            rows[name]["steps/s"] = max(rows[name].get("steps/s", 0.0), measured)
            rows[name].setdefault("each", []).append(measured)
            print(f"{name:18s} {measured:8.0f} env-steps/s (repeat {repeat})", flush=True)
    for name in ("ours-gru", "ours-gru-2t", "ours-lstm", "ours-lstm-2t", "ours-gru-torch", "ours-lstm-torch"):
        rows[name]["predict us"] = predict_latency(name)  # each measured on its own thread settings
        rows[name]["buffer KiB"] = buffer_bytes(name) / 1024
    rows["sb3-contrib-lstm"]["predict us"] = predict_latency("sb3-contrib-lstm")
    rows["sb3-contrib-lstm"]["buffer KiB"] = buffer_bytes("sb3-contrib-lstm") / 1024
    rows["sb3-mlp"]["buffer KiB"] = buffer_bytes("sb3-mlp") / 1024

    if not args.skip_learning:
        jobs = [(name, seed, args.learning_steps) for name in ("ours-gru", "ours-lstm") for seed in range(args.seeds)]
        with ProcessPoolExecutor(args.workers) as pool:
            for name, seed, score in pool.map(learning_run, jobs):
                rows[name].setdefault("returns", []).append(score)
                print(f"{name} seed {seed}: {score:.1f}", flush=True)

    contrib, mlp = rows["sb3-contrib-lstm"], rows["sb3-mlp"]
    print(
        "\n| contender | env-steps/s | x sb3-contrib | x SB3 MLP PPO | x SB3 MLP PPO, median per repeat |"
        f" predict (us/step) | rollout buffer (KiB) | eval return at {args.learning_steps // 1000}k steps, per seed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in contenders:
        r = rows[name]
        latency = f"{r['predict us']:.0f}" if "predict us" in r else "-"
        buffer = f"{r['buffer KiB']:.1f}" if "buffer KiB" in r else "-"
        returns = r.get("returns")
        if returns:
            passed = sum(x >= 475 for x in returns)
            ret = ", ".join(f"{x:.0f}" for x in returns) + f" ({passed}/{len(returns)} >= 475)"
        else:
            ret = "-"
        # each repeat measures every contender within some 20 s, so its ratio shares the spell
        per_repeat = float(np.median(np.array(r["each"]) / np.array(mlp["each"])))
        print(
            f"| {LABELS[name]} | {r['steps/s']:.0f} | {r['steps/s'] / contrib['steps/s']:.2f} | "
            f"{r['steps/s'] / mlp['steps/s']:.2f} | {per_repeat:.2f} | {latency} | {buffer} | {ret} |"
        )
    print(
        f"\npredict latency ours/sb3-contrib: GRU {rows['ours-gru']['predict us'] / contrib['predict us']:.2f}, "
        f"LSTM {rows['ours-lstm']['predict us'] / contrib['predict us']:.2f}; "
        f"buffer memory ours/sb3-contrib: {rows['ours-lstm']['buffer KiB'] / contrib['buffer KiB']:.2f}"
    )


if __name__ == "__main__":
    main()
