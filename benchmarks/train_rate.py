"""The default preset's training rate in one process: env-steps/s over 16,384 steps after a
2,048-step warm-up, one torch thread, printed as one number.

For comparing two versions of the package as whole processes, run in turn several times each
(for example under ``/usr/bin/time -v``), with ``PYTHONPATH`` pointing at the other checkout:

    python -m benchmarks.train_rate
    PYTHONPATH=/path/to/other/checkout python -m benchmarks.train_rate
"""

from __future__ import annotations

import time

import torch as th


def main() -> None:
    th.set_num_threads(1)
    # the old paths of presets and envs (kept as aliases) import in every version of the package
    from recurrent_rl.runs.presets import load_preset
    from recurrent_rl.runs.training import make_model, make_training_env

    config = load_preset("cartpole-novel-gru").replace(device="cpu")
    model = make_model(config, make_training_env(config, 0))
    model.learn(2048)
    started = time.perf_counter()
    model.learn(16384, reset_num_timesteps=False)
    print(f"{16384 / (time.perf_counter() - started):.0f}")


if __name__ == "__main__":
    main()
