"""Supervised side: sequence models, padding masks, the trainer, datasets, pretraining runs."""

import json

import numpy as np
import pytest
import torch as th

from recurrent_rl.cli.pretrain import add_pretrain_command, run_pretrain_command
from recurrent_rl.supervised import (
    FitConfig,
    SequenceDataset,
    SequenceModel,
    SequenceModelConfig,
    Trajectories,
    collate,
    fit,
    load_sequence_model,
    record_trajectories,
    save_sequence_model,
)
from recurrent_rl.supervised.models import reverse_padded
from recurrent_rl.supervised.pretrain import PretrainConfig, resolve_config
from recurrent_rl.supervised.trainer import batch_loss

VARIANTS = [
    dict(task="many_to_many"),
    dict(task="many_to_many", bidirectional=True, memory="lstm"),
    dict(task="many_to_one", pooling="last", memory="rnn", num_layers=2),
    dict(task="many_to_one", pooling="attention", bidirectional=True),
]


def recall_first_dataset(n: int, seed: int, n_symbols: int = 4) -> SequenceDataset:
    """One-hot symbols, lengths 4..12; the label is the first symbol (chance: 1 / n_symbols)."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for _ in range(n):
        symbols = rng.integers(n_symbols, size=rng.integers(4, 13))
        seqs.append(np.eye(n_symbols, dtype=np.float32)[symbols])
        labels.append(symbols[0])
    return SequenceDataset.from_arrays(seqs, np.array(labels))


def test_reverse_padded_keeps_padding_at_the_end():
    x = th.arange(4.0).view(4, 1, 1).repeat(1, 2, 1)  # (T=4, B=2, 1)
    out = reverse_padded(x, th.tensor([4, 2]))
    assert out[:, 0, 0].tolist() == [3, 2, 1, 0] and out[:, 1, 0].tolist() == [1, 0, 2, 3]
    assert th.equal(reverse_padded(out, th.tensor([4, 2])), x)


@pytest.mark.parametrize("options", VARIANTS)
def test_padded_steps_change_neither_outputs_nor_losses_nor_gradients(options):
    th.manual_seed(0)
    regression = options["task"] == "many_to_many"
    config = SequenceModelConfig(
        input_size=3,
        output_size=2,
        hidden_size=8,
        input_layers=(5,),
        objective="regression" if regression else "classification",
        **options,
    )
    model = SequenceModel(config)
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (7, 3, 5)]
    targets = [rng.normal(size=(len(s), 2)) for s in seqs] if regression else [np.int64(i % 2) for i in range(3)]
    batch = collate(SequenceDataset.from_arrays(seqs, targets), [0, 1, 2])
    garbage = batch.x.clone()
    pad = ~(th.arange(7).unsqueeze(1) < batch.lengths.unsqueeze(0))  # (T, B)
    garbage[pad] = th.randn(int(pad.sum()), 3) * 100
    results = []
    for x in (batch.x, garbage):
        model.zero_grad()
        loss, _ = batch_loss(model, batch._replace(x=x))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    th.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        th.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # a padded sequence gives what it gives alone
    model.eval()
    alone = model(batch.x[:3, 1:2], batch.lengths[1:2])
    together = model(batch.x, batch.lengths)
    th.testing.assert_close(
        alone[:, 0] if regression else alone[0], together[:3, 1] if regression else together[1], atol=1e-5, rtol=1e-5
    )


def test_trainer_learns_to_recall_the_first_symbol_far_above_chance(tmp_path):
    data = recall_first_dataset(400, seed=0)
    config = SequenceModelConfig(
        input_size=4, output_size=4, hidden_size=32, task="many_to_one", objective="classification"
    )
    th.manual_seed(0)
    model = SequenceModel(config)
    result = fit(
        model,
        data,
        FitConfig(epochs=25, batch_size=32, learning_rate=1e-2, patience=25, seed=0),
        run_dir=tmp_path,
        log=None,
    )
    assert result.history[-1]["val_accuracy"] > 0.9  # chance is 0.25
    test = recall_first_dataset(200, seed=1)
    batch = collate(test, range(len(test)))
    accuracy = (model.predict(batch.x, batch.lengths) == batch.y).float().mean()
    assert accuracy > 0.9
    # the run folder: TensorBoard events, checkpoints, history
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "best.pt").is_file() and (tmp_path / "checkpoints" / "last.pt").is_file()
    assert len(json.loads((tmp_path / "history.json").read_text())["history"]) == len(result.history)
    reloaded = load_sequence_model(tmp_path / "checkpoints" / "best.pt")
    th.testing.assert_close(reloaded(batch.x, batch.lengths), model(batch.x, batch.lengths))


def test_training_is_reproducible_and_stops_early():
    data = recall_first_dataset(60, seed=2)
    config = SequenceModelConfig(
        input_size=4,
        output_size=4,
        hidden_size=8,
        task="many_to_one",
        objective="classification",
        dropout=0.0,
        memory="lstm",
    )
    histories = []
    for _ in range(2):
        th.manual_seed(0)
        model = SequenceModel(config)
        train = FitConfig(epochs=40, batch_size=8, learning_rate=0.3, patience=2, seed=3)  # too large: val stalls
        histories.append(fit(model, data, train, log=None))
    assert histories[0].history == histories[1].history
    assert histories[0].stopped_early and len(histories[0].history) < 40


def test_many_to_many_regression_with_target_standardisation_learns_a_running_sum():
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(rng.integers(5, 15), 1)).astype(np.float32) for _ in range(200)]
    targets = [10 + 5 * np.cumsum(s, 0) for s in seqs]  # far from zero mean / unit scale
    data = SequenceDataset.from_arrays(seqs, targets)
    assert data.per_step and data.target_size == 1
    th.manual_seed(0)
    model = SequenceModel(SequenceModelConfig(input_size=1, output_size=1, hidden_size=16))
    result = fit(model, data, FitConfig(epochs=30, batch_size=16, learning_rate=1e-2, seed=0), log=None)
    assert result.history[-1]["val_r2"] > 0.9
    assert abs(float(model.target_mean[0]) - 10) < 3  # learnt in standard units, predicted in the data's


def test_from_arrays_accepts_padded_arrays_with_lengths():
    x = np.zeros((3, 5, 2), dtype=np.float32)
    data = SequenceDataset.from_arrays(x, np.zeros((3, 5)), lengths=[5, 2, 3])
    assert [len(s) for s in data.inputs] == [5, 2, 3] and data.per_step and [len(y) for y in data.targets] == [5, 2, 3]
    per_sequence = SequenceDataset.from_arrays(x, np.array([0, 1, 2]), lengths=[5, 2, 3])
    assert not per_sequence.per_step and per_sequence.is_classification and per_sequence.target_size == 3


def test_bad_input_gets_errors_that_name_the_mismatch():
    with pytest.raises(ValueError, match="empty"):
        SequenceDataset.from_arrays([], [])
    with pytest.raises(ValueError, match="sequence 1 has 3 features per step but sequence 0 has 2"):
        SequenceDataset.from_arrays([np.zeros((4, 2)), np.zeros((4, 3))], [0, 1])
    with pytest.raises(ValueError, match="sequence 0 is empty"):
        SequenceDataset([np.zeros((0, 2))], [np.int64(0)], per_step=False)
    with pytest.raises(ValueError, match="2 input sequences but 1 targets"):
        SequenceDataset([np.zeros((3, 2))] * 2, [np.int64(0)], per_step=False)
    data = SequenceDataset.from_arrays([np.zeros((3, 2))] * 4, np.array([0, 1, 2, 4]))
    model = SequenceModel(
        SequenceModelConfig(input_size=2, output_size=3, task="many_to_one", objective="classification")
    )
    with pytest.raises(ValueError, match=r"labels span 0..4 \(5 classes\) but the model has output_size=3"):
        fit(model, data, log=None)
    wide = SequenceModel(
        SequenceModelConfig(input_size=5, output_size=5, task="many_to_one", objective="classification")
    )
    with pytest.raises(ValueError, match="2 features per step but the model's input_size is 5"):
        fit(wide, data, log=None)
    values = SequenceDataset.from_arrays([np.zeros((3, 2))] * 4, [np.zeros((3, 3))] * 4)
    with pytest.raises(ValueError, match="targets have 3 values but the model's output_size is 1"):
        fit(SequenceModel(SequenceModelConfig(input_size=2, output_size=1)), values, log=None)
    with pytest.raises(ValueError, match="unknown sequence model option"):
        SequenceModelConfig.from_dict(dict(input_size=2, output_size=1, hidden=3))
    with pytest.raises(ValueError, match="memory='tcn' is not a memory type"):
        SequenceModelConfig(input_size=2, output_size=1, memory="tcn")


def test_recorded_trajectories_hold_episodes_states_and_next_observations(tmp_path):
    traj = record_trajectories("pomdp/CartPoleNoVel-v1", 300, seed=0)
    assert traj.n_transitions == 300 and traj.n_episodes > 3
    assert all(traj.terminated[:-1]) and traj.truncated[-1]  # the budget cuts the last episode
    first = traj.observations[0]
    np.testing.assert_array_equal(first[:, [1, 3]], 0)  # velocities masked...
    np.testing.assert_array_equal(traj.states[0][:, [0, 2]], first[:, [0, 2]])  # ...but in the state
    assert np.abs(traj.states[0][:, [1, 3]]).sum() > 0
    np.testing.assert_array_equal(traj.next_observations[0][:-1], first[1:])
    data = traj.to_dataset("state", [1, 3])
    assert data.input_size == 4 and data.target_size == 2 and data.n_steps == 300
    traj.save(tmp_path / "t.npz")
    again = Trajectories.load(tmp_path / "t.npz")
    assert again.n_episodes == traj.n_episodes and np.array_equal(again.states[2], traj.states[2])
    # the same seed records the same data; a callable policy works too
    np.testing.assert_array_equal(
        record_trajectories("pomdp/CartPoleNoVel-v1", 300, seed=0).actions[1], traj.actions[1]
    )
    pushes = record_trajectories("pomdp/CartPoleNoVel-v1", 50, policy=lambda obs: 1, seed=0)
    assert all((a == 1).all() for a in pushes.actions)
    pendulum = record_trajectories("pomdp/PendulumNoVel-v1", 20, seed=0)
    assert pendulum.to_dataset("state", [2]).target_size == 1
    with pytest.raises(ValueError, match=r"target_indices \[7\] do not exist in a state of size 4"):
        traj.to_dataset("state", [7])


def test_pretrain_command_writes_a_run_folder_with_an_encoder(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_pretrain_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "pretrain",
            "--preset",
            "cartpole-novel",
            "--runs-dir",
            str(tmp_path),
            "--set",
            "data.n_steps=400",
            "--set",
            "train.epochs=2",
            "--set",
            "model.hidden_size=8",
        ]
    )
    assert run_pretrain_command(args) == 0
    (run,) = tmp_path.iterdir()
    for name in ("config.json", "model.pt", "encoder.pt", "metrics.json", "trajectories.npz", "checkpoints", "tb"):
        assert (run / name).exists(), name
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 8 and saved["data"]["n_steps"] == 400
    assert PretrainConfig.from_dict(saved) == resolve_config(
        "cartpole-novel", None, ["data.n_steps=400", "train.epochs=2", "model.hidden_size=8"]
    )


def test_pretrain_config_errors_name_the_bad_key(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['train.epoch'\]; valid keys in train: \['epochs'"):
        resolve_config("cartpole-novel", None, ["train.epoch=3"])
    with pytest.raises(ValueError, match="unknown pretraining preset 'cartpole'"):
        resolve_config("cartpole", None, [])
    with pytest.raises(ValueError, match="data.env_id is required"):
        PretrainConfig.from_dict({"data": {}})
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"memory": "lstm"}, "modle": {}}))
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['modle'\]"):
        resolve_config("cartpole-novel", config, [])
    import argparse

    args = argparse.Namespace(preset=None, config=None, overrides=["model.memory=gru2"], runs_dir=str(tmp_path))
    assert run_pretrain_command(args) == 2
    assert "memory='gru2' is not a memory type" in capsys.readouterr().err


def test_saved_model_round_trip(tmp_path):
    model = SequenceModel(SequenceModelConfig(input_size=3, output_size=2, bidirectional=True, input_layers=(4,)))
    save_sequence_model(model, tmp_path / "m.pt", {"note": "x"})
    loaded = load_sequence_model(tmp_path / "m.pt")
    x = th.randn(6, 2, 3)
    th.testing.assert_close(loaded(x), model(x))
    assert loaded.metadata == {"note": "x"}


def test_digits_example_reads_rows_as_steps_and_needs_its_memory():
    pytest.importorskip("sklearn")
    from recurrent_rl.supervised.examples import digits_baselines, digits_dataset, run_digits_example

    data = digits_dataset()
    assert len(data) == 1797 and data.inputs[0].shape == (8, 8) and data.target_size == 10 and not data.per_step
    result = run_digits_example(seed=0, epochs=3)
    # chance is about 0.1; a classifier that sees only the last row (no memory of the others) reaches
    # 0.48-0.56, so 0.8 needs the rows read before (0.91 here at 3 epochs, 2026-12-06)
    assert result["test_accuracy"] > 0.8
    assert digits_baselines(seed=0)["majority_class"] < 0.2


def test_trajectories_from_a_trained_model_and_a_self_supervised_target(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.supervised.pretrain import _load_policy

    model = RecurrentPPO(
        "MlpLstmPolicy",
        make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=1),
        n_steps=16,
        batch_size=16,
        policy_kwargs=dict(hidden_size=8),
    )
    model.save(tmp_path / "agent.zip")
    policy = _load_policy(str(tmp_path / "agent.zip"), trust_pickle=True)  # SB3's zip alone: the opt-in
    traj = record_trajectories("pomdp/CartPoleNoVel-v1", 60, policy=policy, seed=1)
    assert traj.n_transitions == 60
    data = traj.to_dataset("next_observation")
    assert data.target_size == 4
    np.testing.assert_array_equal(data.targets[0][:-1], data.inputs[0][1:])  # the next step's observation


# --- the supervised configs on the RL side's schema --------------------------------------------------


def test_supervised_configs_check_types_ranges_and_keys_like_the_rl_configs():
    from recurrent_rl.config.schema import ConfigError

    def error_of(*overrides):
        with pytest.raises(ConfigError) as info:
            resolve_config("cartpole-novel", None, list(overrides))
        return str(info.value)

    assert "config key 'train.epochs': expected an integer >= 1, got 0" in error_of("train.epochs=0")
    assert "config key 'train.val_fraction': expected a number in [0, 1), got 1.0" in error_of("train.val_fraction=1")
    assert "config key 'data.n_steps': expected an integer >= 1, got 'many' (str)" in error_of("data.n_steps=many")
    assert "expected one of 'state', 'next_observation'" in error_of("data.target=velocity")
    assert "Did you mean 'relu'?" in error_of("model.activation=ReLU")
    message = error_of("model.hiden_size=8")
    assert (
        "['model.hiden_size']; valid keys in model: ['memory', 'hidden_size'" in message and "'hidden_size'?" in message
    )
    assert message.startswith("pretraining preset 'cartpole-novel': ")
    assert "unknown env id 'pomdp/CartPoleNoVell-v1'" in error_of("data.env_id=pomdp/CartPoleNoVell-v1")
    assert "config key 'data.policy'" in error_of("data.policy=expert")
    assert "config key 'name': expected a plain folder name" in error_of("name=a/b")
    with pytest.raises(ConfigError, match="config key 'batch_size': expected an integer >= 1, got 0"):
        FitConfig(batch_size=0)
    with pytest.raises(ConfigError, match="config key 'pooling': pooling='attention'"):
        SequenceModelConfig(input_size=2, output_size=1, pooling="attention")
    assert FitConfig.from_dict({"epochs": "1e2"}).epochs == 100  # YAML 1.1 numbers, as for the RL configs


def test_train_config_of_the_supervised_side_is_a_deprecated_alias_of_fit_config():
    import recurrent_rl.supervised as supervised
    import recurrent_rl.supervised.pretrain as pretrain_module
    import recurrent_rl.supervised.trainer as trainer

    for module in (supervised, trainer, pretrain_module):
        with pytest.warns(DeprecationWarning, match="FitConfig"):
            assert module.TrainConfig is FitConfig


def test_pretrain_presets_are_yaml_files_read_like_the_training_presets():
    from recurrent_rl.config.presets import preset_names, preset_text
    from recurrent_rl.config.schema import parse_yaml
    from recurrent_rl.supervised.config import load_pretrain_preset
    from recurrent_rl.supervised.presets import PRESETS, get_preset

    names = preset_names("pretrain")
    assert names == sorted(PRESETS) and {"cartpole-novel", "pendulum-novel"} <= set(names)
    assert not set(names) & set(preset_names())  # the training presets are the other files
    for name in names:
        config = load_pretrain_preset(name)
        assert config.description and config.name == name
        assert get_preset(name) == PRESETS[name] == parse_yaml(preset_text(name, "pretrain"), name)
        assert resolve_config(name) == config == PretrainConfig.from_dict(get_preset(name))


def test_a_pretraining_run_saves_its_resolved_config_as_yaml_that_runs_it_again(tmp_path):
    import yaml

    from recurrent_rl.supervised.pretrain import pretrain

    overrides = ["data.n_steps=300", "train.epochs=1", "model.hidden_size=4", "model.input_layers=[3]"]
    config = resolve_config("cartpole-novel", None, overrides)
    result = pretrain(config, runs_dir=tmp_path, verbose=False)
    text = (result.run_dir / "config.yaml").read_text()
    assert text.startswith("# Resolved pretraining config") and "recurrent-rl pretrain --config" in text
    assert yaml.safe_load(text) == config.to_dict() == json.loads((result.run_dir / "config.json").read_text())
    assert resolve_config(None, result.run_dir / "config.yaml") == config
    assert result.run_dir.name.startswith("cartpole-novel__pomdp-CartPoleNoVel-v1__gru__seed0__")
    assert not list(result.run_dir.rglob(".*")), "temporary files left behind"
    # the same second, the same name: a new folder, never the same one
    again = pretrain(config, runs_dir=tmp_path, verbose=False)
    assert again.run_dir != result.run_dir


def test_the_supervised_make_env_is_the_evaluation_one():
    from recurrent_rl.io.run_folder import RunError
    from recurrent_rl.supervised.data import make_env

    env = make_env("pomdp/CartPoleNoVel-v1", max_episode_steps=7)
    assert env.spec.max_episode_steps == 7
    env.close()
    with pytest.raises(RunError, match="cannot make env pomdp/Nope-v0"):
        make_env("pomdp/Nope-v0")


def test_one_activation_table_for_policy_heads_and_sequence_models():
    from recurrent_rl.config import schema
    from recurrent_rl.config.sections import ACTIVATIONS as POLICY_ACTIVATIONS
    from recurrent_rl.supervised.models import ACTIVATIONS, InputLayers

    assert tuple(ACTIVATIONS) == POLICY_ACTIVATIONS == tuple(schema.ACTIVATIONS)
    for name, cls in ACTIVATIONS.items():
        assert cls is schema.activation_class(name) and isinstance(InputLayers(2, (3,), name).net[1], cls)


def test_r2_is_the_coefficient_of_determination_of_scikit_learn():
    """``evaluate``'s r2 over a dataset equals sklearn's r2_score of the same predictions and targets
    (several entries, variable lengths: padded steps count for nothing), whatever the
    standardisation statistics (here not the data's)."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from recurrent_rl.supervised.trainer import evaluate

    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(rng.integers(3, 9), 2)).astype(np.float32) for _ in range(40)]
    targets = [np.concatenate([3 + np.cumsum(s, 0), -2 * s], axis=1).astype(np.float32) for s in seqs]
    data = SequenceDataset.from_arrays(seqs, targets)
    th.manual_seed(0)
    model = SequenceModel(SequenceModelConfig(input_size=2, output_size=4, hidden_size=8))
    model.target_mean.copy_(th.tensor([1.0, -1.0, 0.5, 0.0]))
    model.target_std.copy_(th.tensor([2.0, 3.0, 1.0, 0.5]))
    predictions = [model.predict(th.from_numpy(s)[:, None])[:, 0].numpy() for s in seqs]  # (T, O) each
    expected = sklearn_metrics.r2_score(np.concatenate(targets), np.concatenate(predictions))
    assert evaluate(model, data, batch_size=7)["r2"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
