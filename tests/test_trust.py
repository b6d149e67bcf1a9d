"""Pickles only by opt-in: resume, evaluate, export and data collection read the weights-only copy.

- A checkpoint's safe copy holds the optimizer state (``model.optimizer.safetensors``), and
  ``--resume`` from it continues exactly as from SB3's zip: the same parameters after more steps.
- A crafted ``model.zip`` / ``vecnormalize.pkl`` in a run folder never runs on ``--resume``,
  ``evaluate``, ``export`` or ``pretrain`` (a marker file is never written).
- A pickle without a safe copy beside it is refused with one message naming ``--trust-pickle``;
  with the flag (``trust_pickle=True`` in Python) it opens.
- A nan observation at the last step of the last rollout (VecNormalize on) saves no final model:
  the error names the last good checkpoint, and ``--resume`` finishes the run from it.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import RecurrentPPO
from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
from recurrent_rl.errors import UntrustedPickleError
from recurrent_rl.export.safe import (
    SafeFormatError,
    load_safe,
    optimizer_path,
    safe_paths,
    save_safe,
)
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import cli
from recurrent_rl.runs.evaluation import load_agent
from recurrent_rl.runs.training import TrainingError, resume, train
from tests.test_safe_format import ENV, WritesMarker, malicious_zip, tiny_model

TINY = [
    "n_envs=2",
    "n_steps=16",
    "batch_size=32",
    "n_timesteps=256",
    "eval.freq=128",
    "eval.episodes=2",
    "eval.final_episodes=2",
    "checkpoint.freq=64",
]


def _same_optimizer_state(a: th.optim.Optimizer, b: th.optim.Optimizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for index, state in sa["state"].items():
        assert state.keys() == sb["state"][index].keys()
        for key, value in state.items():
            assert th.equal(value, sb["state"][index][key]), (index, key)


def test_the_optimizer_state_round_trips(tmp_path):
    model = tiny_model(make_vec_env(ENV, n_envs=2, seed=0), "lstm")
    save_safe(model, tmp_path / "model", optimizer=True)
    assert optimizer_path(tmp_path / "model").is_file()
    loaded = load_safe(tmp_path / "model", optimizer=True)
    _same_optimizer_state(model.policy.optimizer, loaded.policy.optimizer)
    assert loaded.policy.optimizer.state_dict()["state"][0]["exp_avg"].abs().sum() > 0  # moments, not zeros

    # without optimizer=True nothing is written, and asking for it says what is missing
    save_safe(model, tmp_path / "plain")
    assert not optimizer_path(tmp_path / "plain").exists()
    with pytest.raises(SafeFormatError, match="without its optimizer state"):
        load_safe(tmp_path / "plain", optimizer=True)
    # a damaged optimizer file is refused
    optimizer_path(tmp_path / "model").write_bytes(b"not the file")
    with pytest.raises(SafeFormatError, match="not the optimizer state"):
        load_safe(tmp_path / "model", optimizer=True)


def _interrupted_run(tmp_path: Path, name: str = "run") -> Path:
    """A run stopped at a checkpoint before its end (VecNormalize on: the default preset)."""
    config = load_preset(DEFAULT_PRESET, [*TINY, "n_timesteps=128", "eval.final_episodes=0"])
    result = train(config, tmp_path, name=name, progress_bar=False)
    run = result.run_dir
    # raise the target in config.yaml so that --resume has steps to train
    text = (run / runs.CONFIG).read_text().replace("n_timesteps: 128", "n_timesteps: 256")
    (run / runs.CONFIG).write_text(text)
    runs.update_run_info(run, status="interrupted (SIGTERM)")
    return run


def _parameters(model: RecurrentPPO) -> list[th.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


def test_resume_from_the_safe_copy_equals_resume_from_the_zip(tmp_path):
    first = _interrupted_run(tmp_path, "safe")
    second = tmp_path / "pickle"
    shutil.copytree(first, second)
    checkpoint = runs.latest_checkpoint(second)
    assert checkpoint is not None
    for path in (*safe_paths(checkpoint / runs.MODEL), optimizer_path(checkpoint / runs.MODEL)):
        path.unlink()  # the second run can only resume from the zip and the pickle

    by_safe = resume(first, progress_bar=False)
    with pytest.raises(UntrustedPickleError, match="--trust-pickle"):
        resume(second, progress_bar=False)
    by_pickle = resume(second, progress_bar=False, trust_pickle=True)
    assert by_safe.num_timesteps == by_pickle.num_timesteps > 128
    for a, b in zip(_parameters(by_safe.model), _parameters(by_pickle.model)):
        assert th.equal(a, b)
    _same_optimizer_state(by_safe.model.policy.optimizer, by_pickle.model.policy.optimizer)
    stats_a, stats_b = by_safe.model.get_vec_normalize_env(), by_pickle.model.get_vec_normalize_env()
    np.testing.assert_array_equal(stats_a.obs_rms.mean, stats_b.obs_rms.mean)
    np.testing.assert_array_equal(stats_a.ret_rms.var, stats_b.ret_rms.var)


def test_crafted_pickles_in_a_run_folder_never_run(tmp_path, capsys):
    run = _interrupted_run(tmp_path)
    marker = tmp_path / "marker"
    checkpoint = runs.latest_checkpoint(run)
    assert checkpoint is not None
    model = RecurrentPPO.load_safe(checkpoint / runs.MODEL)
    for zip_path in [checkpoint / runs.MODEL, run / runs.BEST_MODEL]:
        malicious_zip(model, zip_path, marker)
    for pkl in [checkpoint / runs.VECNORMALIZE, run / runs.BEST_VECNORMALIZE]:
        pkl.write_bytes(pickle.dumps(WritesMarker(marker)))

    assert cli.main(["evaluate", str(run), "--best", "--episodes", "1"]) == 0
    assert cli.main(["evaluate", str(checkpoint / runs.MODEL), "--env", ENV, "--episodes", "1"]) == 0
    assert cli.main(["export", str(run), "--best", "--out", str(tmp_path / "best.onnx")]) == 0
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "finished"
    # data collection for pretraining, with the crafted zip as the recording policy
    malicious_zip(model, run / runs.MODEL, marker)
    code = cli.main(
        [
            "pretrain",
            "--preset",
            "cartpole-novel",
            "--runs-dir",
            str(tmp_path / "pre"),
            "--set",
            f"data.policy={run / runs.MODEL}",
            "--set",
            "data.n_steps=300",
            "--set",
            "train.epochs=1",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert not marker.exists()


def _plain_zip(tmp_path: Path, marker: Path | None = None) -> Path:
    """A model.zip saved by SB3's ``save`` (no safe copy), optionally with a payload."""
    model = tiny_model(make_vec_env(ENV, n_envs=2, seed=0), "gru", steps=0)
    path = tmp_path / "agent.zip"
    if marker is None:
        model.save(path)
    else:
        malicious_zip(model, path, marker)
    return path


def test_a_pickle_without_a_safe_copy_needs_the_opt_in(tmp_path, capsys):
    marker = tmp_path / "marker"
    crafted = _plain_zip(tmp_path, marker)
    commands = [
        ["evaluate", str(crafted), "--env", ENV, "--episodes", "1"],
        ["export", str(crafted), "--out", str(tmp_path / "a.onnx")],
        [
            "pretrain",
            "--preset",
            "cartpole-novel",
            "--runs-dir",
            str(tmp_path / "pre"),
            "--set",
            f"data.policy={crafted}",
        ],
    ]
    for argv in commands:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "a pickle" in err and "--trust-pickle" in err and "Traceback" not in err, err
    with pytest.raises(UntrustedPickleError):
        load_agent(crafted, env_id=ENV)
    assert not marker.exists() and not (tmp_path / "a.onnx").exists() and not (tmp_path / "pre").exists()

    # with the opt-in, a genuine SB3 zip opens
    genuine = _plain_zip(tmp_path)
    agent = load_agent(genuine, env_id=ENV, trust_pickle=True)
    assert isinstance(agent.model, RecurrentPPO)
    assert cli.main(["evaluate", str(genuine), "--env", ENV, "--episodes", "1", "--trust-pickle"]) == 0
    assert cli.main(["export", str(genuine), "--format", "safe", "--trust-pickle"]) == 0
    capsys.readouterr()
    # the copy export wrote opens without the flag
    assert cli.main(["evaluate", str(genuine), "--env", ENV, "--episodes", "1"]) == 0
    # --trust-pickle means nothing for a new run
    assert cli.main(["train", "--trust-pickle", "--dry-run"]) == 2
    assert "--resume" in capsys.readouterr().err


class NanAtStep(gym.Wrapper):
    """CartPole without velocities whose observation is nan once in the process: at the ``at``-th
    step of the first env that gets there."""

    fired = False

    def __init__(self, at: int):
        super().__init__(gym.make(ENV))
        self.at, self.steps = at, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at and not NanAtStep.fired:
            NanAtStep.fired = True
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


gym.register("tests/NanAtStep-v0", entry_point=NanAtStep)


def test_a_nan_observation_at_the_last_step_saves_no_broken_model(tmp_path, capsys):
    # n_envs=2, n_steps=16: the 128th step of the run is each env's 64th, the last of the last rollout
    config = load_preset(
        DEFAULT_PRESET, [*TINY, "n_timesteps=128", "env=tests/NanAtStep-v0", "env_kwargs={at: 64}", "eval.freq=0"]
    )
    with pytest.raises(TrainingError, match="last good model is checkpoint") as error:
        train(config, tmp_path, name="run", progress_bar=False)
    run = tmp_path / "run"
    good = runs.latest_checkpoint(run)
    assert good is not None and str(good) in str(error.value)
    assert not (run / runs.MODEL).exists() and not (run / runs.VECNORMALIZE).exists()
    assert json.loads((run / runs.RUN_INFO).read_text())["status"].startswith("failed: non-finite")
    for _, checkpoint in runs.checkpoint_dirs(run):  # every checkpoint on disk loads, with finite statistics
        stats = json.loads(safe_paths(checkpoint / runs.MODEL)[1].read_text())["vecnormalize"]
        assert np.isfinite(stats["obs_rms"]["mean"]).all()
    result = resume(run, progress_bar=False)
    assert result.report is not None and (run / runs.MODEL).is_file()
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "finished"
