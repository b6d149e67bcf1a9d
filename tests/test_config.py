"""Typed configs and presets: validation messages, YAML round trip, presets for the whole suite."""

import dataclasses

import numpy as np
import pytest
import torch as th

from recurrent_rl.config.loading import config_from_dict, config_keys, load_config
from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset, preset_names, preset_template, presets_by_env
from recurrent_rl.config.train import ConfigError, Linear, TrainConfig, config_to_yaml, save_config
from recurrent_rl.envs import suite_ids
from recurrent_rl.runs.training import make_model, make_training_env

SMALL = ["n_envs=2", "n_steps=16", "batch_size=32"]


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# --- presets ------------------------------------------------------------------------------------


def test_every_pomdp_env_has_a_preset():
    suite = suite_ids()
    assert suite, "no pomdp/ env registered"
    covered = presets_by_env()
    missing = [env_id for env_id in suite if env_id not in covered]
    templates = "\n".join(f"--- recurrent_rl/presets/<name>.yaml for {m}:\n{preset_template(m)}" for m in missing)
    assert not missing, f"envs of the pomdp/ suite without a preset: {missing}. Add one YAML file each:\n{templates}"


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_a_valid_config_for_a_registered_env(name):
    config = load_preset(name)  # checks the env id too
    assert config.description, f"preset {name} needs a description (shown by recurrent-rl presets)"
    assert config.env.startswith("pomdp/")


def test_default_preset_is_the_default_job():
    config = load_preset(DEFAULT_PRESET)
    assert config.env == "pomdp/CartPoleNoVel-v1" and config.memory == "gru" and config.n_envs == 8
    assert config.normalize.enabled and config.n_timesteps == 100_000 and config.seed == 0
    kwargs = config.algorithm_kwargs()
    expected = dict(n_steps=128, batch_size=1024, n_epochs=18, gae_lambda=0.95, gamma=0.98, ent_coef=0.0)
    assert {k: kwargs[k] for k in expected} == expected  # the tuned settings (docs/sweeps.md, Tuned presets)
    assert kwargs["learning_rate"](0.5) == pytest.approx(3.61984e-4 * 0.5)
    assert kwargs["clip_range"](0.25) == pytest.approx(0.2 * 0.25)
    zoo = load_preset("cartpole-novel-gru-zoo").algorithm_kwargs()  # rl-baselines3-zoo's, as the benchmarks use
    expected = dict(n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, ent_coef=0.0)
    assert {k: zoo[k] for k in expected} == expected and zoo["learning_rate"](0.5) == pytest.approx(1e-3 * 0.5)
    policy = kwargs["policy_kwargs"]
    assert policy["hidden_size"] == 64 and policy["ortho_init"] is False and policy["activation_fn"] is th.nn.ReLU
    assert policy["net_arch"] == dict(pi=[64], vf=[64])


def test_unknown_preset_suggests_close_names():
    message = error_of(load_preset, "cartpole-novel-gr")
    assert "unknown preset 'cartpole-novel-gr'" in message and "cartpole-novel-gru" in message


# --- round trip ---------------------------------------------------------------------------------


def test_yaml_round_trip_gives_the_same_config(tmp_path):
    config = load_preset(DEFAULT_PRESET, ["policy_kwargs.net_arch=[32, 16]", "learning_rate=3e-4", "target_kl=0.02"])
    save_config(config, tmp_path / "config.yaml", header="a header\nof two lines")
    again = load_config(tmp_path / "config.yaml")
    assert again == config
    assert config_to_yaml(again) == config_to_yaml(config)


def first_actions(config: TrainConfig, steps: int = 20) -> np.ndarray:
    env = make_training_env(config, config.seed)
    model = make_model(config, env)
    obs, state, starts, actions = env.reset(), None, np.ones(env.num_envs, dtype=bool), []
    for _ in range(steps):
        action, state = model.predict(obs, state=state, episode_start=starts)  # stochastic: seeded by config.seed
        obs, _, starts, _ = env.step(action)
        actions.append(action)
    env.close()
    return np.stack(actions)


def test_config_round_trip_reproduces_the_first_actions(tmp_path):
    config = load_preset(DEFAULT_PRESET, [*SMALL, "seed=3"])
    save_config(config, tmp_path / "config.yaml")
    reloaded = load_config(tmp_path / "config.yaml")
    a, b = first_actions(config), first_actions(reloaded)
    np.testing.assert_array_equal(a, b)
    other_seed = first_actions(config.replace(seed=4))
    assert not np.array_equal(a, other_seed)  # the seed matters, so the equality above means something


def test_vecnormalize_discounts_returns_with_the_algorithms_gamma_unless_told():
    config = load_preset("cartpole-novel-gru", ["n_envs=1", "n_steps=32", "batch_size=32"])
    env = make_training_env(config, 0)
    try:
        assert env.gamma == config.gamma == 0.98  # as rl-baselines3-zoo wraps it, not VecNormalize's 0.99
    finally:
        env.close()
    env = make_training_env(
        load_preset("cartpole-novel-gru", ["n_envs=1", "n_steps=32", "batch_size=32", "normalize.gamma=0.9"]), 0
    )
    try:
        assert env.gamma == 0.9
    finally:
        env.close()


def test_zoo_layout_and_yaml_1_1_numbers_are_read(tmp_path):
    (tmp_path / "zoo.yaml").write_text(
        "pomdp/CartPoleNoVel-v1:\n  n_envs: 2\n  n_timesteps: 1e5\n  learning_rate: 3e-4\n  n_steps: 16\n  batch_size: 32\n"
        "  policy: MlpLstmPolicy\n  normalize: true\n"
    )
    config = load_config(tmp_path / "zoo.yaml")
    assert config.env == "pomdp/CartPoleNoVel-v1" and config.n_timesteps == 100_000 and config.learning_rate == 3e-4
    assert config.memory == "lstm" and config.normalize.enabled


def test_overrides_expand_shorthands_and_reach_env_kwargs():
    config = load_preset(
        "tmaze-gru", ["normalize.enabled=true", "env_kwargs.corridor_length=4", "policy_kwargs.memory=rnn"]
    )
    assert config.normalize.enabled and config.env_kwargs == {"corridor_length": 4} and config.memory == "rnn"


def test_config_keys_document_every_field():
    keys = "\n".join(config_keys())
    for key in ("env (", "policy_kwargs.hidden_size (an integer >= 1; default 64)", "eval.freq", "checkpoint.keep"):
        assert key in keys


# --- bad input ----------------------------------------------------------------------------------


def test_unknown_key_names_the_key_and_suggests():
    message = error_of(load_preset, DEFAULT_PRESET, ["policy_kwargs.hiden_size=32"])
    assert "policy_kwargs.hiden_size" in message and "Did you mean 'hidden_size'" in message
    message = error_of(config_from_dict, {"env": "pomdp/CartPoleNoVel-v1", "n_step": 32})
    assert "'n_step'" in message and "'n_steps'" in message


@pytest.mark.parametrize(
    "override, expected",
    [
        ("n_steps=many", "config key 'n_steps': expected an integer >= 1, got 'many' (str)"),
        ("n_steps=true", "expected an integer >= 1, got True (bool)"),
        ("gamma=1.5", "config key 'gamma': expected a number in [0, 1], got 1.5"),
        (
            "policy_kwargs.memory=gruu",
            "expected one of 'gru', 'lstm', 'rnn', 'mingru', 'minlstm', 'transformer', 'ffm' or null, got 'gruu' (str)",
        ),
        ("policy=MlpGRUPolicy", "Did you mean 'MlpGruPolicy'?"),
        ("policy_kwargs.activation_fn=ReLU", "one of 'tanh', 'relu'"),
        ("learning_rate=lin_fast", "expected a number > 0 or lin_<number > 0>"),
        ("learning_rate=lin_1e400", "got 'lin_1e400'"),  # overflows to inf: not a schedule
        ("clip_range=lin_inf", "got 'lin_inf'"),
        ("n_timesteps=1e30", "config key 'n_timesteps': expected an integer in [1, 1000000000000]"),
        ("policy_kwargs.net_arch=[64, big]", "item 1: expected an integer"),
        ("normalize=maybe", "expected a mapping with keys enabled"),
        ("sequence_length=100", "sequence_length=100 does not divide n_steps=128"),
    ],
)
def test_ill_typed_values_say_what_is_expected(override, expected):
    assert expected in error_of(load_preset, DEFAULT_PRESET, [override])


def test_batch_sizes_that_do_not_divide_are_accepted_as_the_python_api_accepts_them():
    """A minibatch size that is not a multiple of the chunk length, or does not divide the rollout,
    runs with RecurrentPPO's warning (plan_minibatches), from a config as from Python."""
    import warnings

    from stable_baselines3.common.env_util import make_vec_env

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.runs.training import make_model
    from recurrent_rl.runs.vec_env import make_training_env

    config = load_preset(DEFAULT_PRESET, ["batch_size=100", "n_envs=2", "normalize=false"])
    assert config.batch_size == 100
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_model(config.replace(device="cpu"), make_training_env(config, 0))
    from_config = sorted(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    assert any("batch_size=100 is smaller than n_steps=128" in m for m in from_config)
    assert any("does not split into minibatches of 100 steps" in m for m in from_config)
    with warnings.catch_warnings(record=True) as caught:  # the same warnings as RecurrentPPO in Python
        warnings.simplefilter("always")
        kwargs = {**config.algorithm_kwargs(), "device": "cpu"}
        RecurrentPPO(env=make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2), **kwargs)
    assert sorted(str(w.message) for w in caught if issubclass(w.category, UserWarning)) == from_config


def test_set_needs_key_equals_value():
    assert "--set expects KEY=VALUE" in error_of(load_preset, DEFAULT_PRESET, ["n_steps"])


def test_malformed_yaml_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env: pomdp/CartPoleNoVel-v1\nn_steps: 32\npolicy_kwargs: {hidden_size: 64\n")
    message = error_of(load_config, path)
    assert str(path) in message and "malformed YAML at line 4" in message


def test_unknown_env_suggests_close_ids():
    message = error_of(load_preset, DEFAULT_PRESET, ["env=pomdp/CartPoleNoVell-v1"])
    assert "unknown env id 'pomdp/CartPoleNoVell-v1'" in message and "'pomdp/CartPoleNoVel-v1'" in message


def test_missing_config_file_and_missing_env_key(tmp_path):
    assert "does not exist" in error_of(load_config, tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("n_steps: 32\n")
    assert "config key 'env': missing required key" in error_of(load_config, tmp_path / "empty.yaml")


def test_configs_are_frozen_and_validated_on_replace():
    config = load_preset(DEFAULT_PRESET)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_steps = 3  # type: ignore[misc]
    assert "n_envs" in error_of(config.replace, n_envs=0)
    assert isinstance(Linear(1.0)(0.5), float)


def test_policy_choices_are_the_core_aliases():
    from recurrent_rl import RecurrentPPO
    from recurrent_rl.config.sections import POLICIES

    assert set(POLICIES) == set(RecurrentPPO.policy_aliases)


def test_the_config_names_every_memory_core():
    from recurrent_rl.config.sections import MEMORIES
    from recurrent_rl.nets.memory import MEMORIES as CORE_MEMORIES

    assert MEMORIES == CORE_MEMORIES


def test_memory_kwargs_reach_the_policy():
    from recurrent_rl.config.loading import config_from_dict

    config = config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": {"memory": "mingru"}})
    assert config.algorithm_kwargs()["policy_kwargs"]["memory"] == "mingru"
    assert "memory_kwargs" not in config.algorithm_kwargs()["policy_kwargs"]
    config = config_from_dict(
        {
            "env": "pomdp/CartPoleNoVel-v1",
            "policy_kwargs": {"memory": "transformer", "memory_kwargs": {"memory_length": 8}},
        }
    )
    assert config.algorithm_kwargs()["policy_kwargs"]["memory_kwargs"] == {"memory_length": 8}


# --- a section given in part means what it says, not a default that contradicts it ------------------


@pytest.mark.parametrize(
    "given",
    [
        ["normalize={norm_obs: true, norm_reward: false}"],  # the zoo's way to turn VecNormalize on
        ["normalize.norm_reward=false"],  # a config without a normalize section
    ],
)
def test_a_normalize_mapping_turns_vecnormalize_on(given, tmp_path):
    values = {"env": "pomdp/CartPoleNoVel-v1"}
    config = config_from_dict(values, given)
    assert config.normalize.enabled and not config.normalize.norm_reward
    # in a file too, and unless it says enabled: false
    path = tmp_path / "c.yaml"
    path.write_text("env: pomdp/CartPoleNoVel-v1\nnormalize: {norm_reward: false, clip_obs: 5}\n")
    assert load_config(path).normalize.enabled
    path.write_text("env: pomdp/CartPoleNoVel-v1\nnormalize: {enabled: false, norm_reward: false}\n")
    assert not load_config(path).normalize.enabled
    # and the listing of a config shows it so
    from recurrent_rl.config.schema import flat_values
    from recurrent_rl.config.train import TrainConfig

    assert flat_values(TrainConfig, {"env": "x", "normalize": {"norm_reward": False}})["normalize.enabled"] is True


def test_a_net_arch_mapping_means_what_sb3_reads_from_it():
    """SB3's MlpExtractor reads a dict's missing head as no hidden layers; so does the config."""
    config = config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": {"net_arch": {"pi": [32]}}})
    assert config.policy_kwargs.net_arch.pi == (32,) and config.policy_kwargs.net_arch.vf == ()
    assert config.algorithm_kwargs()["policy_kwargs"]["net_arch"] == {"pi": [32], "vf": []}
    untouched = config_from_dict({"env": "pomdp/CartPoleNoVel-v1"})
    assert untouched.policy_kwargs.net_arch.vf == (64, 64)  # no mapping given: the default


@pytest.mark.parametrize("option", ["encoder.freeze=true", "encoder.critic=true"])
def test_encoder_options_without_an_encoder_are_refused(option):
    message = error_of(config_from_dict, {"env": "pomdp/CartPoleNoVel-v1"}, [option])
    assert "encoder.path is null" in message and "--encoder PATH" in message
