"""Pretrain a GRU to estimate what the observations hide, then reuse it as a PPO agent's memory.

CartPole without velocities shows the cart position and the pole angle; the velocities must be
inferred from how they change. Here a supervised sequence model learns that from recorded
random-policy episodes (its target: the whole state, velocities included), and its GRU and
input layers become the memory of a RecurrentPPO agent, frozen.

    python examples/pretrain_encoder.py                      # 3k recorded steps, 50k PPO steps
    python examples/pretrain_encoder.py --epochs 20 --timesteps 20000

The same path from the command line: ``recurrent-rl pretrain --preset cartpole-novel``, then
``recurrent-rl train --encoder runs/<run>/encoder.pt``. Files written under ``--out``:
``trajectories.npz``, ``encoder.pt``, ``model.zip`` and ``vecnormalize.pkl``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl import RecurrentPPO, encoder_policy_kwargs, load_encoder
from recurrent_rl.supervised import FitConfig, SequenceModel, SequenceModelConfig, evaluate, fit, record_trajectories
from recurrent_rl.supervised.encoder import export_encoder

ENV_ID = "pomdp/CartPoleNoVel-v1"


def pretrain(steps: int, epochs: int, out: Path, seed: int) -> Path:
    """Record random-policy episodes, fit a GRU to the hidden state, and export its encoder."""
    # 1. data: every episode's observations, actions, rewards and hidden states (info["state"],
    #    the unmasked CartPole state for pomdp/ envs)
    trajectories = record_trajectories(ENV_ID, n_steps=steps, policy="random", seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    trajectories.save(out / "trajectories.npz")
    # one sequence per episode: inputs are the observations, targets the state at every step
    dataset = trajectories.to_dataset("state")
    print(f"recorded {trajectories.n_transitions} steps in {trajectories.n_episodes} episodes")

    # 2. model: input layers (standardisation) -> GRU -> linear head, an output at every step.
    #    The GRU is the policies' own memory core, so its weights map onto a policy name for name.
    th.manual_seed(seed)  # the initial weights
    model = SequenceModel(
        SequenceModelConfig(
            input_size=dataset.input_size,
            output_size=dataset.target_size,
            memory="gru",
            hidden_size=64,
            num_layers=1,
            task="many_to_many",
            objective="regression",
        )
    )

    # 3. training: AdamW, gradient clipping, early stopping on a validation split of the episodes
    config = FitConfig(
        epochs=epochs,
        batch_size=32,
        learning_rate=3e-3,
        weight_decay=1e-4,
        max_grad_norm=1.0,
        val_fraction=0.2,
        patience=15,
        seed=seed,
    )
    result = fit(model, dataset, config, log=None)
    _, val_set = dataset.split(config.val_fraction, config.seed)  # the same split as fit()'s
    assert val_set is not None  # val_fraction > 0
    metrics = evaluate(model, val_set)
    # R² is 1 for a perfect estimate of the state, 0 for always guessing its mean
    print(f"sequence model: {len(result.history)} epochs, validation R² {metrics['r2']:.3f}")

    # 4. the causal part (input layers + GRU, no head) as an encoder file; "transitions" weighs the
    #    encoder's statistics when VecNormalize starts from them (below)
    metadata = {"env_id": ENV_ID, "transitions": trajectories.n_transitions}
    path = export_encoder(model, out / "encoder.pt", metadata=metadata)
    print(f"exported {path}")
    return path


def train_with_encoder(encoder: Path, timesteps: int, out: Path, seed: int) -> tuple[RecurrentPPO, VecNormalize]:
    """RecurrentPPO whose actor and critic memories start from the encoder, kept frozen."""
    # VecNormalize standardises observations; load_encoder starts its running statistics at the
    # encoder's training statistics, so the encoder first sees inputs as it did in training
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=8, seed=seed), norm_obs=True, gamma=0.98)
    # memory type and sizes from the encoder; the heads and the rest as usual
    policy_kwargs = encoder_policy_kwargs(
        encoder, critic_memory="separate", activation_fn=th.nn.ReLU, ortho_init=False, net_arch=dict(pi=[64], vf=[64])
    )
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        policy_kwargs=policy_kwargs,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=lambda progress: 1e-3 * progress,
        clip_range=lambda progress: 0.2 * progress,
        seed=seed,
    )
    # after construction: SB3 re-initialises Linear layers inside the constructor, so weights put
    # in earlier would be lost. freeze=True keeps them bit-identical through learn().
    load_encoder(model, encoder, freeze=True, critic=True, observation_statistics="vecnormalize")
    model.learn(timesteps)
    model.save(out / "model.zip")
    env.save(str(out / "vecnormalize.pkl"))
    print(f"trained {model.num_timesteps} steps with the frozen encoder")
    return model, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=3000, help="recorded random-policy steps (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=100, help="most supervised epochs (default: %(default)s)")
    parser.add_argument("--timesteps", type=int, default=50_000, help="PPO steps (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/examples/pretrain_encoder"),
        help="folder for the files (default: %(default)s)",
    )
    args = parser.parse_args()

    # small recurrent nets run fastest on one thread; RecurrentPPO.learn() sets that itself on the
    # CPU, the supervised fit() uses torch's count as it is
    th.set_num_threads(1)
    encoder = pretrain(args.steps, args.epochs, args.out, args.seed)
    model, env = train_with_encoder(encoder, args.timesteps, args.out, args.seed)

    env.training, env.norm_reward = False, False  # fixed statistics, returns in the env's units
    mean, std = evaluate_policy(model, env, n_eval_episodes=args.episodes, deterministic=True)
    print(f"mean return over {args.episodes} episodes: {mean:.1f} ± {std:.1f} (maximum 500)")


if __name__ == "__main__":
    main()
