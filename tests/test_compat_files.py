"""Files written by recurrent_rl 0.1.0 (tests/fixtures/release-0.1, see its README) still load,
evaluate, export and resume, and its study continues: the package's modules moved, its files did not."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "release-0.1"
TINY = [
    "n_timesteps=256",
    "n_envs=2",
    "batch_size=64",
    "eval.freq=128",
    "eval.episodes=2",
    "eval.final_episodes=2",
    "checkpoint.freq=0",
]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(FIXTURES / "run", copy)
    return copy


def _main(argv: list[str]) -> int:
    from recurrent_rl.__main__ import main

    return main(argv)


def test_the_zip_and_the_safe_copy_load_and_act_alike(run):
    import gymnasium as gym

    from recurrent_rl import RecurrentPPO, load_safe

    # SB3's zip pickles the learning-rate schedule by the module path of 0.1.0 (our own file: trusted)
    zipped = RecurrentPPO.load(run / "model.zip", device="cpu")
    safe = load_safe(run, device="cpu")
    assert zipped.num_timesteps == safe.num_timesteps == 256
    assert zipped.learning_rate(0.5) == pytest.approx(safe.learning_rate(0.5))
    env = gym.make("pomdp/CartPoleNoVel-v1")
    obs, _ = env.reset(seed=0)
    state_a = state_b = None
    start = np.ones(1, dtype=bool)
    for _ in range(20):
        action_a, state_a = zipped.predict(obs[None], state=state_a, episode_start=start, deterministic=True)
        action_b, state_b = safe.predict(obs[None], state=state_b, episode_start=start, deterministic=True)
        assert action_a == action_b
        start = np.zeros(1, dtype=bool)
        obs, _, terminated, truncated, _ = env.step(int(action_a[0]))
        if terminated or truncated:
            break


def test_the_run_evaluates_exports_and_resumes(run, tmp_path):
    assert _main(["evaluate", str(run), "--episodes", "2", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["episodes"] == 2
    assert _main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    assert _main(["export", str(run), "--format", "safe", "--out", str(tmp_path / "copy")]) == 0
    assert _main(["train", "--resume", str(run), "--timesteps", "320", "--no-progress"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["num_timesteps"] >= 320


def test_the_study_continues(tmp_path):
    pytest.importorskip("optuna")
    from recurrent_rl.config.presets import load_preset
    from recurrent_rl.sweeps.tune import run_study

    (tmp_path / "tune").mkdir()
    shutil.copy(FIXTURES / "study.db", tmp_path / "tune" / "fixture.db")
    run_study(
        load_preset("repeat-first-gru", TINY),
        trials=3,
        space=FIXTURES / "space.yaml",
        runs_dir=tmp_path,
        study="fixture",
        sampler="random",
        seed=1,
    )
    with sqlite3.connect(tmp_path / "tune" / "fixture.db") as db:
        states = db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    assert states == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
