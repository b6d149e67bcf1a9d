"""RecurrentSAC around the algorithm: configs (algo), run folders, checkpoints with the replay
buffer, --resume, TensorBoard, evaluate, the weights-only format and ONNX export.

The runs are a few hundred steps of PendulumNoVel with small networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from recurrent_rl import RecurrentSAC
from recurrent_rl.algorithms import load_safe
from recurrent_rl.config.loading import config_from_dict, load_config
from recurrent_rl.config.presets import load_preset
from recurrent_rl.config.train import ConfigError, TrainConfig
from recurrent_rl.io.safe import save_safe
from recurrent_rl.io.values import SafeFormatError
from recurrent_rl.runs import cli
from recurrent_rl.runs.checkpoints import REPLAY_BUFFER
from recurrent_rl.runs.training import resume, train

PENDULUM = "pomdp/PendulumNoVel-v1"
SMALL = {
    "algo": "sac",
    "env": PENDULUM,
    "n_envs": 1,
    "n_timesteps": 300,
    "learning_starts": 100,
    "sequence_length": 8,
    "burn_in": 2,
    "batch_size": 8,
    "buffer_size": 5000,
    "stored_states": True,
    "policy_kwargs": {"hidden_size": 16, "net_arch": [32, 32]},
    "eval": {"freq": 150, "episodes": 1, "final_episodes": 2},
    "checkpoint": {"freq": 150},
}


def _config(**changes) -> TrainConfig:
    return config_from_dict({**SMALL, **changes})


# --- the config -------------------------------------------------------------------------------------


def test_an_sac_config_takes_sac_defaults_and_round_trips_through_its_yaml(tmp_path):
    config = config_from_dict({"algo": "sac", "env": PENDULUM})
    assert (config.batch_size, config.ent_coef, config.sequence_length) == (32, "auto", 32)
    assert config.policy_kwargs.activation_fn == "relu" and config.policy_kwargs.net_arch.pi == (256, 256)
    written = config.to_dict()
    assert "n_steps" not in written and "ortho_init" not in written["policy_kwargs"]
    assert "buffer_size" not in config_from_dict({"env": PENDULUM}).to_dict()  # a ppo config is as before
    from recurrent_rl.config.schema import save_config

    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_the_sac_preset_builds_the_benchmarks_settings():
    """pendulum-novel-sac is what benchmarks/offpolicy.py measured (RSAC_SETTINGS["pendulum"])."""
    from benchmarks.offpolicy import RSAC_SETTINGS

    config = load_preset("pendulum-novel-sac")
    kwargs = config.algorithm_kwargs()
    measured = dict(RSAC_SETTINGS["pendulum"])
    net_arch = measured.pop("policy_kwargs")["net_arch"]
    assert {key: kwargs[key] for key in measured} == measured
    assert kwargs["policy_kwargs"]["net_arch"] == {"pi": net_arch, "qf": net_arch}
    assert (kwargs["memory"], kwargs["hidden_size"], kwargs["critic_memory"], kwargs["prev_action"]) == (
        "gru",
        64,
        "separate",
        True,
    )
    assert config.algorithm == "RecurrentSAC" and config.n_timesteps == 30_000


@pytest.mark.parametrize(
    "values, words",
    [
        ({"algo": "sac", "n_epochs": 3}, "n_epochs is RecurrentPPO's"),
        ({"algo": "sac", "policy_kwargs": {"ortho_init": False}}, "policy_kwargs.ortho_init is RecurrentPPO's"),
        ({"algo": "maskable", "stored_states": True}, "stored_states is RecurrentSAC's"),
        ({"tau": 0.01}, "tau is RecurrentSAC's"),
        ({"algo": "sac", "policy_kwargs": {"critic_memory": "none"}}, "separate"),
        ({"algo": "sac", "policy": "CnnGruPolicy"}, "vector observations"),
        ({"algo": "sac", "sequence_length": None}, "a fixed length"),
        ({"algo": "sac", "gradient_steps": 0}, "or -1"),
        ({"algo": "sac", "ent_coef": 0}, "a number > 0"),
    ],
)
def test_a_key_of_the_other_algorithm_or_a_bad_sac_value_is_refused(values, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict({"env": PENDULUM, **values})


# --- a run folder -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("sac-runs")
    result = train(_config(), runs, "sac", progress_bar=False)
    assert result.report is not None and result.report.episodes == 2
    return result.run_dir


def test_a_run_folder_holds_safe_copies_checkpoints_with_the_buffer_and_tensorboard_curves(sac_run):
    for name in ("model.safetensors", "model.json", "best_model.json", "eval.json", "config.yaml"):
        assert (sac_run / name).is_file(), name
    checkpoints = sorted((sac_run / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["step_0000000150", "step_0000000300"]
    for checkpoint in checkpoints:
        for name in ("model.optimizer.safetensors", "model.critic_optimizer.safetensors", REPLAY_BUFFER):
            assert (checkpoint / name).is_file(), name
    assert json.loads((sac_run / "model.json").read_text())["algorithm"] == "RecurrentSAC"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in sac_run.glob("tb/**/events*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    wanted = {
        "train/actor_loss",
        "train/critic_loss",
        "train/ent_coef",
        "train/q_values",
        "memory/actor_state_norm",
        "memory/critic_state_norm",
        "grad/actor_memory_norm",
        "eval/mean_reward",
    }
    assert wanted <= tags, wanted - tags


def test_the_safe_copy_acts_as_the_model_and_evaluate_reads_it(sac_run, capsys):
    model = RecurrentSAC.load(sac_run / "model.zip", device="cpu")  # our own file: the pickle is trusted here
    copy_ = load_safe(sac_run / "model", device="cpu")
    assert type(copy_) is RecurrentSAC
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    state_a = state_b = None
    for step in range(6):
        start = np.full(3, step == 0)
        a, state_a = model.predict(obs, state=state_a, episode_start=start, deterministic=True)
        b, state_b = copy_.predict(obs, state=state_b, episode_start=start, deterministic=True)
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert cli.main(["evaluate", str(sac_run), "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out


def test_resume_continues_with_the_checkpoints_buffer_optimizers_and_entropy_coefficient(sac_run, tmp_path):
    checkpoint = sac_run / "checkpoints" / "step_0000000150"
    env = make_vec_env(PENDULUM, n_envs=1, seed=0)
    model = RecurrentSAC.load(checkpoint / "model.zip", env=env, device="cpu")
    model.load_replay_arrays(checkpoint / REPLAY_BUFFER)
    safe = RecurrentSAC.load_safe(checkpoint / "model", env=env, device="cpu", optimizer=True)
    safe.load_replay_arrays(checkpoint / REPLAY_BUFFER)
    assert safe.replay_buffer.pos == 150 and th.equal(safe.log_ent_coef.detach(), model.log_ent_coef.detach())
    for store in ("observations", "actions", "rewards", "episode_steps"):
        np.testing.assert_array_equal(getattr(safe.replay_buffer, store), getattr(model.replay_buffer, store))
    # SB3's zip holds the optimizers too: the same next update from both (same windows, same noise)
    for m in (model, safe):
        m.set_logger(configure(None, []))
        np.random.seed(3)
        th.manual_seed(3)
        m.train(gradient_steps=2, batch_size=8)
    for p, q in zip(model.policy.parameters(), safe.policy.parameters()):
        assert th.allclose(p, q, atol=1e-6)
    assert th.allclose(model.log_ent_coef, safe.log_ent_coef)

    run = tmp_path / "run"
    import shutil

    shutil.copytree(sac_run, run)
    result = resume(run, timesteps=400, progress_bar=False)
    assert result.num_timesteps == 400 and result.report is not None
    assert (run / "checkpoints" / "step_0000000400" / REPLAY_BUFFER).is_file()


def test_a_replay_buffer_file_that_does_not_fit_is_refused_before_use(sac_run, tmp_path):
    checkpoint = sac_run / "checkpoints" / "step_0000000150"
    other = RecurrentSAC(
        "MlpPolicy", make_vec_env(PENDULUM, n_envs=1), sequence_length=8, burn_in=2, buffer_size=5000
    )  # no stored states: the file's states_* arrays do not fit
    before = other.replay_buffer.observations.copy()
    with pytest.raises(SafeFormatError, match="does not hold this model's replay buffer"):
        other.load_replay_arrays(checkpoint / REPLAY_BUFFER)
    data = dict(np.load(checkpoint / REPLAY_BUFFER))
    data["rewards"] = data["rewards"].copy()
    data["rewards"][3] = np.nan
    np.savez(tmp_path / "nan.npz", **data)
    model = RecurrentSAC.load_safe(checkpoint / "model", env=make_vec_env(PENDULUM, n_envs=1), device="cpu")
    with pytest.raises(SafeFormatError, match=r"\(rewards\) holds nan"):
        model.load_replay_arrays(tmp_path / "nan.npz")
    assert model.replay_buffer.pos == 0 and np.array_equal(other.replay_buffer.observations, before)


def test_a_checkpoint_of_another_algorithm_is_refused_by_resume(sac_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sac_run, run)
    text = (run / "config.yaml").read_text()
    ppo = {k: v for k, v in load_config(run / "config.yaml").to_dict().items() if k not in ("algo",)}
    for key in ("buffer_size", "learning_starts", "train_freq", "gradient_steps", "tau", "target_update_interval"):
        ppo.pop(key)
    for key in ("target_entropy", "burn_in", "stored_states", "prev_action", "prev_reward"):
        ppo.pop(key)
    ppo["ent_coef"] = 0.0
    ppo["sequence_length"] = None
    from recurrent_rl.config.schema import save_config

    save_config(config_from_dict(ppo), run / "config.yaml")
    assert text != (run / "config.yaml").read_text()
    with pytest.raises(SafeFormatError, match="holds a RecurrentSAC, but the run's config trains RecurrentPPO"):
        resume(run, timesteps=400, progress_bar=False)


# --- the safe format and ONNX -----------------------------------------------------------------------


def test_a_safe_copy_of_an_untrained_ent_coef_keeps_the_fixed_coefficient(tmp_path):
    model = RecurrentSAC(
        "MlpPolicy", make_vec_env(PENDULUM, n_envs=2), ent_coef=0.05, sequence_length=8, buffer_size=400
    )
    save_safe(model, tmp_path / "m", optimizer=True)
    assert not (tmp_path / "m.ent_coef_optimizer.safetensors").exists()
    loaded = load_safe(tmp_path / "m", optimizer=True)
    assert loaded.log_ent_coef is None and float(loaded.ent_coef_tensor) == pytest.approx(0.05)
    assert (loaded.n_envs, loaded.sequence_length, loaded.buffer_size) == (2, 8, 400)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("buffer_size", 10**15, "replay buffer of buffer_size"),
        ("burn_in", 8, "burn_in 8 must be smaller than sequence_length 8"),
        ("train_freq", [1, "hour"], "train_freq[1]"),
        ("ent_coef", "auto_x", "expected a number, auto or auto_<x>"),
        ("log_ent_coef", "big", "log_ent_coef"),
    ],
)
def test_a_safe_copy_with_a_crafted_setting_is_refused_before_it_is_built(sac_run, tmp_path, field, value, words):
    import shutil

    for name in ("model.safetensors", "model.json"):
        shutil.copy(sac_run / name, tmp_path / name)
    config = json.loads((tmp_path / "model.json").read_text())
    config["hyperparameters"][field] = value
    (tmp_path / "model.json").write_text(json.dumps(config))
    with pytest.raises(SafeFormatError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_safe(tmp_path / "model")


def test_onnx_export_of_the_actor_gives_predicts_actions_with_the_previous_action_as_state(sac_run, tmp_path):
    from recurrent_rl.export.onnx import ExportError, export_onnx
    from recurrent_rl.export.play import OnnxPolicy

    model = load_safe(sac_run / "model", device="cpu")
    path = export_onnx(model, tmp_path / "actor.onnx")
    onnx = OnnxPolicy(path)
    state = onnx.initial_state(2)
    assert state["state.actor.1"].shape == (1, 2, 1)  # the previous action, one more state tensor
    obs = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)
    torch_state = None
    for step in range(8):
        start = np.array([step == 0, step == 4])
        want, torch_state = model.predict(obs, state=torch_state, episode_start=start, deterministic=True)
        got, state, _ = onnx.step(obs, state, start)
        np.testing.assert_allclose(got, want, atol=1e-5)
        obs = obs + 0.1 * want
    with pytest.raises(ExportError, match="exports its actor only"):
        export_onnx(model, tmp_path / "value.onnx", include_value=True)


def test_evaluation_feeds_the_previous_reward_to_a_memory_that_reads_it():
    import gymnasium as gym

    from recurrent_rl.runs.evaluation import run_episodes

    model = RecurrentSAC(
        "MlpPolicy", make_vec_env(PENDULUM, n_envs=1), prev_reward=True, sequence_length=8, buffer_size=400, seed=0
    )
    report = run_episodes(model, gym.make(PENDULUM, max_episode_steps=20), episodes=2, seed=0)
    assert report.lengths == [20, 20]


def test_the_replay_buffer_round_trips_through_its_arrays_wrapped_around(tmp_path):
    """A buffer that has wrapped (full, pos inside) comes back array for array and samples the same windows."""
    options = dict(sequence_length=6, burn_in=2, buffer_size=100, learning_starts=30, batch_size=4, stored_states=True)
    model = RecurrentSAC("MlpPolicy", make_vec_env(PENDULUM, n_envs=2, seed=0), seed=0, **options)
    model.learn(130)  # 65 steps per env into a buffer of 50 per env
    buffer = model.replay_buffer
    assert buffer.full and 0 < buffer.pos < buffer.buffer_size
    model.save_replay_arrays(tmp_path / "buffer.npz")
    other = RecurrentSAC("MlpPolicy", make_vec_env(PENDULUM, n_envs=2, seed=1), seed=1, **options)
    other.load_replay_arrays(tmp_path / "buffer.npz")
    loaded = other.replay_buffer
    assert (loaded.pos, loaded.full) == (buffer.pos, buffer.full)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts", "episode_steps"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(buffer, name))
    for a, b in zip(loaded.states, buffer.states):
        np.testing.assert_array_equal(a, b)
    np.random.seed(0)
    want = buffer.sample(4)
    np.random.seed(0)
    got = loaded.sample(4)
    for x, y in zip(want, got):
        if isinstance(x, th.Tensor):
            assert th.equal(x, y)
