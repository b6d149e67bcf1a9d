"""rl-baselines3-zoo's hyperparameter files, read as the zoo writes them (recurrent_rl/config/zoo.py).

One test per way the zoo writes a value (Python text for ``policy_kwargs``, ``nn.ReLU``,
sb3-contrib's option names, several env sections, env ids without ``pomdp/``), on small files
written here; then the zoo's own ``hyperparams/ppo_lstm.yml``, taken at run time from the
rl_zoo3 wheel on the package index (``pip download``, as tests/test_contrib_upstream.py takes
sb3-contrib's tests), every section read and every RecurrentPPO section whose env this package
runs trained for one rollout. Where the download fails (no network) those tests skip and say
so, except under ``CI=true``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch as th
import yaml

from recurrent_rl import RecurrentPPO
from recurrent_rl.cli.main import main
from recurrent_rl.config.loading import config_from_dict, load_config
from recurrent_rl.config.train import ConfigError
from recurrent_rl.config.zoo import python_value
from recurrent_rl.runs.training import train

RL_ZOO3_VERSION = "2.9.2"
# the sections of ppo_lstm.yml (rl_zoo3 2.9.2) whose envs this package runs without other packages:
# the pomdp/ suite and Gymnasium's classic control; the others need Box2D, PyBullet, MuJoCo or Atari
RUNNABLE = (
    "PendulumNoVel-v1",
    "CartPoleNoVel-v1",
    "MountainCarNoVel-v0",
    "MountainCarContinuousNoVel-v0",
    "Acrobot-v1",
)
# one rollout of these is thousands of steps with a long update
LONG = ("PendulumNoVel-v1", "MountainCarContinuousNoVel-v0", "Acrobot-v1")

SECTION = """\
CartPoleNoVel-v1:
  normalize: True
  n_envs: 2
  n_timesteps: !!float 1e5
  policy: 'MlpLstmPolicy'
  n_steps: 32
  batch_size: 64
  learning_rate: lin_0.001
  policy_kwargs: "dict(
                    ortho_init=False,
                    activation_fn=nn.ReLU,
                    lstm_hidden_size=48,
                    enable_critic_lstm=True,
                    net_arch=dict(pi=[64], vf=[64])
                  )"
"""


def write(tmp_path: Path, text: str, name: str = "zoo.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- each quirk -----------------------------------------------------------------------------------


def test_python_text_is_read_without_running_it():
    text = "dict(log_std_init=-3.29, ortho_init=False, net_arch=[dict(pi=[], vf=[])], activation_fn=th.nn.GELU)"
    assert python_value(text, "policy_kwargs") == {
        "log_std_init": -3.29,
        "ortho_init": False,
        "net_arch": [{"pi": [], "vf": []}],
        "activation_fn": "th.nn.GELU",
    }
    assert python_value("{'norm_obs': True, 'norm_reward': False}", "normalize") == {
        "norm_obs": True,
        "norm_reward": False,
    }
    for text in (
        "dict(a=__import__('os').system('true'))",
        "dict(optimizer_class=th.optim.RMSprop)",
        "dict(a=1 + 2)",
        "dict(**other)",
        "dict(a=x)",
    ):
        with pytest.raises(ConfigError, match="never run"):
            python_value(text, "policy_kwargs")
    with pytest.raises(ConfigError, match="cannot read"):
        python_value("dict(a=", "policy_kwargs")


def test_policy_kwargs_as_python_text_and_nn_activations(tmp_path):
    config = load_config(write(tmp_path, SECTION))
    pk = config.policy_kwargs
    assert (pk.ortho_init, pk.activation_fn, pk.net_arch.pi, pk.net_arch.vf) == (False, "relu", (64,), (64,))
    assert th.nn.ReLU in {type(m) for m in _policy(config).mlp_extractor.modules()}
    for name, expected in (("nn.GELU", "gelu"), ("torch.nn.Tanh", "tanh"), ("nn.ELU", "elu")):
        values = {"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": f"dict(activation_fn={name})"}
        assert config_from_dict(values).policy_kwargs.activation_fn == expected
    with pytest.raises(ConfigError, match="not one of the supported torch.nn activations"):
        config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": "dict(activation_fn=nn.Hardswish)"})


def test_old_sb3_net_arch_list_of_one_dict():
    values = {"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": "dict(net_arch=[dict(pi=[32], vf=[16, 16])])"}
    arch = config_from_dict(values).policy_kwargs.net_arch
    assert (arch.pi, arch.vf) == ((32,), (16, 16))
    with pytest.raises(ConfigError, match="shared by actor and critic"):
        config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": "dict(net_arch=[64, dict(pi=[32])])"})


def _policy(config, seed: int = 0):
    th.manual_seed(seed)
    kwargs = config.algorithm_kwargs()
    kwargs["policy_kwargs"].pop("kernel_threads")
    kwargs["policy_kwargs"]["backend"] = "torch"
    return RecurrentPPO(env="pomdp/CartPoleNoVel-v1", seed=seed, **kwargs).policy


@pytest.mark.parametrize(
    "contrib",
    [
        {"lstm_hidden_size": 48, "enable_critic_lstm": False},
        {"lstm_hidden_size": 32, "n_lstm_layers": 2, "lstm_kwargs": {"dropout": 0.25}},
        {"shared_lstm": True, "enable_critic_lstm": False},
    ],
    ids=["no-critic-lstm", "two-layers-dropout", "shared"],
)
def test_contrib_names_build_what_the_python_api_builds(contrib):
    """A config with sb3-contrib's option names builds the policy that RecurrentPPO(policy_kwargs=...)
    builds from the same names: same options, same parameters from the same seed."""
    text = "dict(" + ", ".join(f"{k}={v!r}" for k, v in contrib.items()) + ")"
    config = config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy": "MlpLstmPolicy", "policy_kwargs": text})
    from_config = _policy(config)
    th.manual_seed(0)
    from_api = RecurrentPPO(
        "MlpLstmPolicy", "pomdp/CartPoleNoVel-v1", seed=0, policy_kwargs={**contrib, "backend": "torch"}
    ).policy
    for name in (
        "memory",
        "hidden_size",
        "num_layers",
        "critic_memory",
        "detach_critic_memory",
        "dropout",
        "gate_bias",
    ):
        assert getattr(from_config, name) == getattr(from_api, name), name
    state, expected = from_config.state_dict(), from_api.state_dict()
    assert state.keys() == expected.keys()
    assert all(th.equal(state[k], expected[k]) for k in state)


def test_contrib_names_on_a_policy_without_lstm_are_refused():
    with pytest.raises(ConfigError, match="sb3-contrib's LSTM options"):
        config_from_dict(
            {"env": "pomdp/CartPoleNoVel-v1", "policy": "MlpGruPolicy", "policy_kwargs": "dict(lstm_hidden_size=8)"}
        )
    with pytest.raises(ConfigError, match="shared_lstm: true needs enable_critic_lstm: false"):
        config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": {"shared_lstm": True}})
    with pytest.raises(ConfigError, match="both lstm_hidden_size"):
        config_from_dict({"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": {"lstm_hidden_size": 8, "hidden_size": 8}})


def test_what_a_zoo_section_leaves_out_takes_the_zoos_defaults(tmp_path):
    """n_envs 1 (the zoo's), an LSTM of 256 units with PyTorch's initialisation (sb3-contrib's)."""
    config = load_config(write(tmp_path, "MountainCarNoVel-v0:\n  policy: MlpLstmPolicy\n  n_timesteps: 1000\n"))
    assert (config.n_envs, config.memory, config.policy_kwargs.hidden_size, config.policy_kwargs.gate_bias) == (
        1,
        "lstm",
        256,
        0.0,
    )
    flat = load_config(write(tmp_path, "env: pomdp/MountainCarNoVel-v0\npolicy: MlpLstmPolicy\n", "flat.yml"))
    assert (flat.n_envs, flat.policy_kwargs.hidden_size, flat.policy_kwargs.gate_bias) == (8, 64, None)


def test_several_sections_and_env_picks_one(tmp_path):
    path = write(tmp_path, SECTION + "Acrobot-v1:\n  n_envs: 3\n  policy: MlpLstmPolicy\n")
    assert load_config(path, ["env=Acrobot-v1"]).n_envs == 3
    picked = load_config(path, ["env=CartPoleNoVel-v1"])
    assert picked.env == "pomdp/CartPoleNoVel-v1" and picked.policy_kwargs.hidden_size == 48
    assert load_config(path, ["env=pomdp/CartPoleNoVel-v1"]).policy_kwargs.hidden_size == 48  # the full id too
    with pytest.raises(ConfigError, match=r"pick one with --env ID") as info:
        load_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="no section for env 'Acrobot-v2'.*Did you mean 'Acrobot-v1'"):
        load_config(path, ["env=Acrobot-v2"])


def test_bare_env_ids_are_found_under_pomdp():
    assert config_from_dict({"env": "TMaze-L50-v0"}).env == "pomdp/TMaze-L50-v0"
    assert config_from_dict({"env": "CartPole-v1"}).env == "CartPole-v1"  # Gymnasium's own stays itself
    assert config_from_dict({}, ["env=CartPoleNoVel-v1"]).env == "pomdp/CartPoleNoVel-v1"


def test_command_line_trains_a_zoo_section(tmp_path, capsys):
    path = write(tmp_path, SECTION + "Acrobot-v1:\n  n_envs: 3\n  policy: MlpLstmPolicy\n")
    assert main(["train", "--config", str(path), "--env", "CartPoleNoVel-v1", "--dry-run"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["env"] == "pomdp/CartPoleNoVel-v1" and resolved["policy_kwargs"]["hidden_size"] == 48
    assert main(["train", "--config", str(path)]) == 2
    assert "pick one with --env ID" in capsys.readouterr().err


# --- the zoo's own file ---------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI=true: the zoo's file must be read)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rl_zoo3")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"rl_zoo3=={RL_ZOO3_VERSION}"]
    try:
        result = subprocess.run([*command, "-d", str(folder)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"could not download rl_zoo3 {RL_ZOO3_VERSION}: {error}")
    wheels = sorted(folder.glob("rl_zoo3-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        _unavailable(f"could not download rl_zoo3 {RL_ZOO3_VERSION}: {last}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        path = folder / "ppo_lstm.yml"
        path.write_bytes(wheel.read("rl_zoo3/hyperparams/ppo_lstm.yml"))
    return path


def test_every_section_of_the_zoos_file_is_read_or_refused_with_one_line(zoo_file):
    sections = yaml.safe_load(zoo_file.read_text())
    assert set(RUNNABLE) <= set(sections)
    for env in sections:
        try:
            config = load_config(zoo_file, [f"env={env}"], check_env=False)
        except ConfigError as error:
            # Atari's and CarRacing's wrappers are Python classes a file cannot import; 'default' is SB3's PPO
            assert env in ("default", "atari", "CarRacing-v3"), f"{env}: {error}"
            assert "\n" not in str(error)
            continue
        assert config.policy in ("MlpLstmPolicy", "CnnLstmPolicy") and config.memory == "lstm", env
        kwargs = sections[env].get("policy_kwargs", "")
        if "lstm_hidden_size" in kwargs:
            size = int(kwargs.split("lstm_hidden_size=")[1].split(",")[0].split(")")[0])
            assert config.policy_kwargs.hidden_size == size, env
        if "nn.ReLU" in kwargs:
            assert config.policy_kwargs.activation_fn == "relu", env


@pytest.mark.parametrize("env", [pytest.param(env, marks=pytest.mark.slow) if env in LONG else env for env in RUNNABLE])
def test_the_zoos_recurrent_ppo_sections_train(zoo_file, env, tmp_path):
    """Each section as written (its n_envs, n_steps, batch size, policy), for one rollout and its update."""
    small = ["n_timesteps=1", "eval.freq=0", "eval.episodes=1", "eval.final_episodes=1", "checkpoint.freq=0"]
    config = load_config(zoo_file, [f"env={env}", *small])
    section = yaml.safe_load(zoo_file.read_text())[env]
    assert (config.n_envs, config.n_steps) == (section["n_envs"], section.get("n_steps", 128))
    result = train(config, tmp_path, "run", progress_bar=False)
    assert result.num_timesteps == config.n_envs * config.n_steps
    assert result.report is not None and result.report.episodes == 1


def test_hyperparams_in_the_zoos_form_are_set_overrides(capsys):
    zoo = ["--hyperparams", "n_steps:64", "learning_rate:lin_1e-3", 'policy_kwargs:"dict(activation_fn=nn.ReLU)"']
    assert main(["train", *zoo, "--dry-run"]) == 0
    from_zoo = yaml.safe_load(capsys.readouterr().out)
    sets = ["--set", "n_steps=64", "--set", "learning_rate=lin_1e-3", "--set", "policy_kwargs={activation_fn: relu}"]
    assert main(["train", *sets, "--dry-run"]) == 0
    assert from_zoo == yaml.safe_load(capsys.readouterr().out)
    assert (from_zoo["n_steps"], from_zoo["policy_kwargs"]["activation_fn"]) == (64, "relu")
