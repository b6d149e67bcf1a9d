"""The safe model format: model.safetensors + model.json round-trip a model without unpickling.

Round trip: the reloaded model plays the same seeded episodes with the same deterministic actions
and states. A crafted SB3 zip and vecnormalize.pkl that run code when unpickled sit next to the
safe copy; loading through the safe path never runs them (a marker file is never written), and
pickle / torch.load are never called. Bad files (truncated, corrupt, foreign, spaces of another
env, classes outside the allow-list) give one clear error.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from recurrent_rl import RecurrentPPO
from recurrent_rl.config.train import Linear
from recurrent_rl.export.safe import (
    SafeFormatError,
    has_safe_copy,
    load_safe,
    load_safe_vecnormalize,
    read_safe_config,
    safe_paths,
    save_safe,
)
from recurrent_rl.runs.evaluation import run_episodes
from tests.spaces_env import OBSERVATION_SPACES, SpacesEnv

ENV = "pomdp/CartPoleNoVel-v1"


def tiny_model(env, memory: str = "gru", policy: str = "MlpGruPolicy", steps: int = 64, **policy_kwargs):
    kwargs = dict(memory=memory, hidden_size=16, net_arch=[16], activation_fn=th.nn.ReLU, **policy_kwargs)
    if memory == "transformer":
        kwargs["memory_kwargs"] = {"memory_length": 4}
    model = RecurrentPPO(
        policy, env, n_steps=16, batch_size=32, n_epochs=1, learning_rate=Linear(1e-3), policy_kwargs=kwargs, seed=0
    )
    if steps:
        model.learn(steps)
    return model


def same_episodes(a, b, env_id: str = ENV, episodes: int = 5, seed: int = 3, normalize_obs=None) -> None:
    """Both models play the same seeded episodes identically (returns, lengths, memory trace)."""
    first = run_episodes(a, gym.make(env_id), episodes, deterministic=True, seed=seed, normalize_obs=normalize_obs)
    second = run_episodes(b, gym.make(env_id), episodes, deterministic=True, seed=seed, normalize_obs=normalize_obs)
    assert first.returns == second.returns and first.lengths == second.lengths
    np.testing.assert_array_equal(first.hidden_states, second.hidden_states)


@pytest.mark.parametrize("memory", ["gru", "lstm", "mingru", "transformer", "ffm"])
def test_round_trip_gives_identical_actions(tmp_path, memory):
    model = tiny_model(make_vec_env(ENV, n_envs=2, seed=0), memory)
    weights, config = save_safe(model, tmp_path)
    assert (weights, config) == (tmp_path / "model.safetensors", tmp_path / "model.json")
    loaded = load_safe(tmp_path, env=make_vec_env(ENV, n_envs=1))
    assert isinstance(loaded, RecurrentPPO) and loaded.policy.memory == memory
    same_episodes(model, loaded)
    for key, value in model.policy.state_dict().items():
        assert th.equal(value, loaded.policy.state_dict()[key]), key
    # step by step too, from the same states and episode starts
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    starts = np.array([1, 0, 1, 0])
    state = tuple(
        np.random.default_rng(0).standard_normal(s).astype(np.float32) * 0.1
        for s in model.policy.actor_memory.state_shapes(4)
    )
    if memory == "transformer":
        state = (state[0], (state[1] > 0).astype(np.float32))
    a1, s1 = model.predict(obs, state, starts, deterministic=True)
    a2, s2 = loaded.predict(obs, state, starts, deterministic=True)
    assert np.array_equal(a1, a2) and all(np.array_equal(x, y) for x, y in zip(s1, s2))


def test_round_trip_box_actions_without_env(tmp_path):
    model = tiny_model(make_vec_env("Pendulum-v1", n_envs=2, seed=0), "gru")
    save_safe(model, tmp_path / "pendulum")
    loaded = load_safe(tmp_path / "pendulum.json")  # no env: acts with predict
    assert loaded.env is None and loaded.action_space == model.action_space
    same_episodes(model, loaded, env_id="Pendulum-v1", episodes=2)


def test_a_shared_cnn_extractor_is_stored_once(tmp_path):
    env = DummyVecEnv([lambda: SpacesEnv(OBSERVATION_SPACES["image"], spaces.Discrete(3))] * 2)
    model = tiny_model(env, policy="CnnGruPolicy", steps=0, share_features_extractor=True)
    weights, config = save_safe(model, tmp_path)
    aliases = json.loads(config.read_text())["aliases"]
    assert aliases and all(name.startswith(("pi_features_extractor.", "vf_features_extractor.")) for name in aliases)
    loaded = load_safe(tmp_path, env=DummyVecEnv([lambda: SpacesEnv(OBSERVATION_SPACES["image"], spaces.Discrete(3))]))
    obs = np.stack([OBSERVATION_SPACES["image"].sample() for _ in range(3)])
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert loaded.policy.pi_features_extractor is loaded.policy.features_extractor


def test_vecnormalize_statistics_and_settings_round_trip(tmp_path):
    venv = VecNormalize(make_vec_env(ENV, n_envs=2, seed=0), gamma=0.98, clip_obs=4.0)
    model = tiny_model(venv, "gru")
    save_safe(model, tmp_path)  # the model's own VecNormalize
    normalizer = load_safe_vecnormalize(tmp_path, make_vec_env(ENV, n_envs=1))
    assert not normalizer.training and normalizer.clip_obs == 4.0 and normalizer.gamma == 0.98
    np.testing.assert_array_equal(normalizer.obs_rms.mean, venv.obs_rms.mean)
    np.testing.assert_array_equal(normalizer.obs_rms.var, venv.obs_rms.var)
    assert normalizer.obs_rms.count == venv.obs_rms.count and normalizer.ret_rms.var == venv.ret_rms.var
    venv.training = False
    same_episodes(model, load_safe(tmp_path), normalize_obs=normalizer.normalize_obs)


def test_training_continues_from_a_safe_copy(tmp_path):
    model = tiny_model(make_vec_env(ENV, n_envs=2, seed=0), "gru")
    save_safe(model, tmp_path)
    loaded = load_safe(tmp_path, env=make_vec_env(ENV, n_envs=2, seed=1))
    assert loaded.num_timesteps == 64 and isinstance(loaded.learning_rate, Linear)
    assert (loaded.n_steps, loaded.batch_size, loaded.sequence_length) == (16, 32, 16)
    loaded.learn(32, reset_num_timesteps=False)
    assert loaded.num_timesteps == 96


def test_a_schedule_function_is_stored_as_its_current_value(tmp_path):
    model = RecurrentPPO(
        "MlpGruPolicy",
        make_vec_env(ENV, n_envs=2),
        n_steps=16,
        batch_size=32,
        learning_rate=lambda progress: 3e-4 * progress,
    )
    with pytest.warns(UserWarning, match="learning_rate is a function"):
        _, config = save_safe(model, tmp_path)
    assert json.loads(config.read_text())["hyperparameters"]["learning_rate"] == pytest.approx(3e-4)


# --- files that run code when unpickled ----------------------------------------------------------------


class WritesMarker:
    """Unpickling this runs ``exec``, which writes a marker file (what a malicious model would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def malicious_zip(model: RecurrentPPO, path: Path, marker: Path) -> None:
    """SB3's zip with a pickled payload in its ``data`` entry (``policy_class``, cloudpickled as SB3 stores it)."""
    buffer = io.BytesIO()
    model.save(buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source:
        entries = {name: source.read(name) for name in source.namelist()}
    data = json.loads(entries["data"])
    payload = base64.b64encode(pickle.dumps(WritesMarker(marker))).decode()
    data["policy_class"] = {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, content in entries.items():
            target.writestr(name, content)


def test_malicious_pickles_next_to_the_safe_copy_never_run(tmp_path, monkeypatch):
    venv = VecNormalize(make_vec_env(ENV, n_envs=2, seed=0))
    model = tiny_model(venv, "gru")
    folder = tmp_path / "shared"
    save_safe(model, folder / "model")
    marker = tmp_path / "marker"
    malicious_zip(model, folder / "model.zip", marker)
    (folder / "vecnormalize.pkl").write_bytes(pickle.dumps(WritesMarker(marker)))
    assert has_safe_copy(folder / "model.zip")  # what evaluate and export find next to the zip

    # the payloads are live: opened the unsafe way, each writes its marker
    probe_zip, probe_pkl = tmp_path / "probe_zip", tmp_path / "probe_pkl"
    malicious_zip(model, tmp_path / "probe.zip", probe_zip)
    try:
        RecurrentPPO.load(tmp_path / "probe.zip")
    except Exception:
        pass  # the payload runs before SB3 notices the class is wrong
    assert probe_zip.read_text() == "ran"
    try:
        VecNormalize.load(str(_write(tmp_path / "probe.pkl", pickle.dumps(WritesMarker(probe_pkl)))), make_vec_env(ENV))
    except Exception:
        pass
    assert probe_pkl.read_text() == "ran"

    # the safe path: nothing unpickled at all
    def refuse(*args, **kwargs):
        raise AssertionError("the safe path unpickled something")

    for target in ("pickle.load", "pickle.loads", "torch.load", "cloudpickle.load", "cloudpickle.loads"):
        monkeypatch.setattr(target, refuse)
    loaded = load_safe(folder, env=make_vec_env(ENV))
    normalizer = load_safe_vecnormalize(folder, make_vec_env(ENV))
    assert not marker.exists()
    venv.training = False
    same_episodes(model, loaded, normalize_obs=normalizer.normalize_obs)
    assert not marker.exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_classes_outside_the_allow_list_are_refused_and_nothing_is_imported(tmp_path):
    model = tiny_model(make_vec_env(ENV, n_envs=2), steps=0)
    _, config = save_safe(model, tmp_path)
    data = json.loads(config.read_text())
    outside = "is not from torch.nn, torch.optim, stable_baselines3, recurrent_rl: refused"
    for name, expected in (
        ("os:system", outside),
        ("subprocess:Popen", outside),
        ("builtins:eval", outside),
        ("torch.nn:Module.__subclasses__", outside),  # a private or nested name: never looked up
        ("torch.nn:_private", outside),
        ("recurrent_rl.export.safe:SafeFormatError", "is not a torch module or optimizer class: refused"),
    ):
        data["policy_kwargs"]["activation_fn"] = {"__class__": name}
        config.write_text(json.dumps(data))
        with pytest.raises(SafeFormatError, match=re.escape(expected)):
            load_safe(tmp_path)


class MyExtractor(th.nn.Module):
    """A features extractor of the user's own (outside the allow-list)."""


def test_custom_classes_are_stored_only_when_named(tmp_path):
    from stable_baselines3.common.torch_layers import FlattenExtractor

    class Mine(FlattenExtractor):
        pass

    model = RecurrentPPO(
        "MlpGruPolicy",
        make_vec_env(ENV, n_envs=2),
        n_steps=16,
        batch_size=32,
        policy_kwargs=dict(hidden_size=8, features_extractor_class=Mine),
    )
    (tmp_path / "model.json").write_text("previous")
    with pytest.raises(SafeFormatError, match="custom_classes"):
        save_safe(model, tmp_path)
    assert (tmp_path / "model.json").read_text() == "previous" and not (tmp_path / "model.safetensors").exists()
    save_safe(model, tmp_path, custom_classes={"mine:Mine": Mine})
    with pytest.raises(SafeFormatError, match="not from torch.nn"):
        load_safe(tmp_path)
    loaded = load_safe(tmp_path, custom_classes={"mine:Mine": Mine})
    assert type(loaded.policy.features_extractor) is Mine


# --- bad files ---------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    save_safe(tiny_model(make_vec_env(ENV, n_envs=2), steps=0), tmp_path)
    return tmp_path


def test_a_truncated_or_corrupt_weights_file_is_refused(saved):
    weights, _ = safe_paths(saved)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SafeFormatError, match="damaged, truncated, or replaced"):
        load_safe(saved)
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SafeFormatError, match="damaged, truncated, or replaced"):
        load_safe(saved)


def test_a_corrupt_json_file_is_refused(saved):
    _, config = safe_paths(saved)
    text = config.read_text()
    for bad, message in (
        (text[: len(text) // 2], "not valid JSON"),
        ("[1, 2]", "not a recurrent_rl safe model"),
        (json.dumps({"format": "other"}), "its format is 'other'"),
        (text.replace('"format_version": 1', '"format_version": 7'), "format version 7"),
    ):
        config.write_text(bad)
        with pytest.raises(SafeFormatError, match=message):
            load_safe(saved)


def test_a_missing_file_is_named(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(SafeFormatError, match="model.safetensors does not exist"):
        load_safe(saved)


def test_weights_that_do_not_fit_the_config_are_refused(saved, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    save_safe(tiny_model(make_vec_env(ENV, n_envs=2), steps=0, num_layers=2), other)
    config = json.loads((saved / "model.json").read_text())
    config["weights_sha256"] = json.loads((other / "model.json").read_text())["weights_sha256"]
    (saved / "model.json").write_text(json.dumps(config))
    (saved / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(SafeFormatError, match="does not fit the policy"):
        load_safe(saved)


def test_spaces_of_another_env_are_refused(saved):
    with pytest.raises(
        SafeFormatError,
        match=re.escape(
            "trained on observations Box(4,) float32 and actions Discrete(2), but the env has observations "
            "Box(3,) float32 and actions Box(1,) float32: attach the env it was trained on"
        ),
    ):
        load_safe(saved, env=make_vec_env("Pendulum-v1"))
    with pytest.raises(SafeFormatError, match="attach the env it was trained on"):
        load_safe(saved, env=gym.make("pomdp/TMaze-v0"))
    read_safe_config(saved)  # the files are fine


def test_vecnormalize_absent_or_for_another_env(saved, tmp_path):
    with pytest.raises(SafeFormatError, match="holds no VecNormalize statistics"):
        load_safe_vecnormalize(saved, make_vec_env(ENV))
    venv = VecNormalize(make_vec_env(ENV, n_envs=2))
    save_safe(tiny_model(venv, steps=0), tmp_path / "norm")
    with pytest.raises(SafeFormatError, match="statistics of shape"):
        load_safe_vecnormalize(tmp_path / "norm", make_vec_env("Pendulum-v1"))
