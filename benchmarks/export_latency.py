"""Per-step latency of an exported policy in onnxruntime against ``model.predict`` in PyTorch.

One env (batch 1), the memory carried from step to step and reset at episode starts, the same
recorded observations fed to every variant; torch on one thread, one onnxruntime session with
``intra_op_num_threads=1``. Variants are interleaved round by round and each figure is the
median over rounds of the mean time per step:

- ``predict``: ``model.predict(obs, state, episode_start, deterministic=True)`` with the default
  backend (``auto``: the compiled CPU kernels where they apply) and with ``backend="torch"``;
- ``onnxruntime``: :meth:`recurrent_rl.export.play.OnnxPolicy.step` (what the runner calls: the
  feed dict, dtype checks and the state dict included) and the bare ``session.run`` call.

Policies are untrained (timing does not depend on the weights), the memory and head sizes the
package's defaults (hidden_size 64, net_arch [64, 64]) unless given.

    python -m benchmarks.export_latency
    python -m benchmarks.export_latency --memories gru transformer --hidden-size 128 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from benchmarks.machine import cpu_model

ENV = "pomdp/CartPoleNoVel-v1"
MEMORIES = ("gru", "lstm", "mingru", "transformer")


def recorded_episode_steps(env_id: str, steps: int, seed: int) -> tuple[list[np.ndarray], list[bool]]:
    """Observations of ``steps`` steps of random play, with the episode-start flag of each."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    observations, starts, start = [], [], True
    for _ in range(steps):
        observations.append(np.asarray(obs)[None])
        starts.append(start)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        start = terminated or truncated
        if start:
            obs, _ = env.reset()
    env.close()
    return observations, starts


def make_model(memory: str, backend: str, hidden_size: int, net_arch: list[int]) -> Any:
    from recurrent_rl import RecurrentPPO

    kwargs: dict[str, Any] = dict(memory=memory, hidden_size=hidden_size, net_arch=net_arch, backend=backend)
    return RecurrentPPO("MlpGruPolicy", ENV, n_steps=16, batch_size=16, policy_kwargs=kwargs, seed=0, device="cpu")


def time_predict(model: Any, observations: list[np.ndarray], starts: list[bool]) -> float:
    state = None
    begin = time.perf_counter()
    for obs, start in zip(observations, starts):
        _, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
    return (time.perf_counter() - begin) / len(observations)


def time_runner(policy: Any, observations: list[np.ndarray], starts: list[bool]) -> float:
    state = None
    begin = time.perf_counter()
    for obs, start in zip(observations, starts):
        _, state, _ = policy.step(obs, state, np.array([start], dtype=np.float32))
    return (time.perf_counter() - begin) / len(observations)


def time_session(policy: Any, observations: list[np.ndarray], starts: list[bool]) -> float:
    session = policy.session
    outputs = [o["name"] for o in policy.metadata["outputs"]]
    state_names = [s["name"] for s in policy.states]
    state = list(policy.initial_state(1).values())
    obs_name = policy.obs_inputs[0]["name"]
    feeds = [np.asarray(obs, dtype=np.float32) for obs in observations]
    flags = [np.array([1.0 if s else 0.0], dtype=np.float32) for s in starts]
    begin = time.perf_counter()
    for obs, flag in zip(feeds, flags):
        result = session.run(outputs, {obs_name: obs, "episode_start": flag, **dict(zip(state_names, state))})
        state = result[1 : 1 + len(state_names)]
    return (time.perf_counter() - begin) / len(observations)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", nargs="+", default=list(MEMORIES), choices=list(MEMORIES))
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--net-arch", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--steps", type=int, default=400, help="steps per variant and round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    import onnxruntime as ort

    from recurrent_rl.export import OnnxPolicy, export_onnx

    command = " ".join(["python -m benchmarks.export_latency", *(sys.argv[1:] if argv is None else argv)])
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, torch {th.__version__}, onnxruntime {ort.__version__}, "
        f"`{command}`",
        flush=True,
    )
    print(
        f"one env of {ENV}, hidden_size {args.hidden_size}, net_arch {args.net_arch}; microseconds per step "
        f"(median of {args.rounds} rounds of {args.steps} steps); ratio = onnxruntime (runner) / predict (auto)"
    )
    observations, starts = recorded_episode_steps(ENV, args.steps, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for memory in args.memories:
            model = make_model(memory, "auto", args.hidden_size, args.net_arch)
            torch_model = make_model(memory, "torch", args.hidden_size, args.net_arch)
            torch_model.policy.load_state_dict(model.policy.state_dict())
            path = export_onnx(model, Path(folder) / f"{memory}.onnx")
            policy = OnnxPolicy(path, threads=1)
            variants = {
                "predict (auto)": lambda m=model: time_predict(m, observations, starts),
                "predict (torch)": lambda m=torch_model: time_predict(m, observations, starts),
                "onnxruntime (runner)": lambda p=policy: time_runner(p, observations, starts),
                "onnxruntime (session.run)": lambda p=policy: time_session(p, observations, starts),
            }
            for run in variants.values():
                run()  # warm-up
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):  # interleaved: a slow moment of the machine hits every variant
                for name, run in variants.items():
                    times[name].append(run())
            medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
            rows.append((memory, medians, path.stat().st_size, model.policy.backend_name))
        names = list(rows[0][1])
        print("| memory | " + " | ".join(names) + " | ratio | .onnx size |")
        print("|---|" + "---:|" * (len(names) + 2))
        for memory, medians, size, _ in rows:
            ratio = medians["onnxruntime (runner)"] / medians["predict (auto)"]
            cells = " | ".join(f"{medians[name]:.0f}" for name in names)
            print(f"| {memory} | {cells} | {ratio:.2f} | {size / 1024:.0f} kB |")
        print(f"predict (auto) ran on the {rows[0][3]} backend")


if __name__ == "__main__":
    main()
