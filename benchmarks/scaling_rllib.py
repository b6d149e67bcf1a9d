"""RLlib's PPO with an LSTM on the scaling benchmark's task (run by ``benchmarks/scaling.py`` from
``.venv-rllib``, made by ``bash benchmarks/setup_rllib.sh``): prints one JSON line with its
env-steps/s, the update included.

New API stack, ``DefaultModelConfig(use_lstm=True)``: an LSTM of 64 units after RLlib's
tokenizer (one dense layer of 64: RLlib's recurrent encoder needs one), separate actor and critic
encoders (``vf_share_layers=False``, as our separate critic memory), heads [64] ReLU, rollout
fragments of 128 steps, train batch and minibatch 1,024, 18 epochs, ``max_seq_len`` 128, the
default preset's learning rate, gamma and lambda, observations standardised by RLlib's
``MeanStdFilter`` (as VecNormalize does for ours). 8 envs in all: in the local env runner
(``--runners 0``) or spread over the remote ones.

    .venv-rllib/bin/python -m benchmarks.scaling_rllib --seconds 0.01 --runners 8 --iterations 3
"""

from __future__ import annotations

import argparse
import json
import os
import time

N_ENVS = 8


def make_env(config: dict) -> object:
    import gymnasium as gym

    import recurrent_rl.envs  # noqa: F401  registers pomdp/
    from recurrent_rl.envs import StepCost

    return StepCost(gym.make("pomdp/CartPoleNoVel-v1"), config["seconds"], busy=config["busy"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--runners", type=int, default=0)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()

    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import MeanStdFilter
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.tune.registry import register_env

    ray.init(num_cpus=max(args.runners + 2, 2), include_dashboard=False, log_to_driver=False)
    register_env("slow-cartpole-novel", make_env)
    config = (
        PPOConfig()
        .environment("slow-cartpole-novel", env_config={"seconds": args.seconds, "busy": args.busy})
        .framework("torch")
        .env_runners(
            num_env_runners=args.runners,
            num_envs_per_env_runner=N_ENVS // max(args.runners, 1),
            rollout_fragment_length=128,
            env_to_module_connector=lambda env, spaces=None, device=None: MeanStdFilter(),
        )
        .training(
            train_batch_size_per_learner=1024,
            minibatch_size=1024,
            num_epochs=18,
            lr=3.61984e-4,
            gamma=0.98,
            lambda_=0.95,
            clip_param=0.2,
            entropy_coeff=0.0,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                use_lstm=True,
                lstm_cell_size=64,
                max_seq_len=int(os.environ.get("RLLIB_MAX_SEQ_LEN", "128")),
                fcnet_hiddens=[64],
                fcnet_activation="relu",
                head_fcnet_hiddens=[64],
                head_fcnet_activation="relu",
                vf_share_layers=False,
            )
        )
        .debugging(seed=0)
    )
    algo = config.build_algo()

    def sampled(result: dict) -> int:
        return int(result["env_runners"]["num_env_steps_sampled_lifetime"])

    start_steps = sampled(algo.train())  # warm-up iteration
    started = time.perf_counter()
    for _ in range(args.iterations):
        result = algo.train()
    elapsed = time.perf_counter() - started
    steps = sampled(result) - start_steps
    print(json.dumps({"env_steps_per_s": steps / elapsed, "steps": steps, "seconds": elapsed}), flush=True)
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
