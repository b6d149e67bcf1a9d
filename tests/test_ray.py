"""--executor ray: trials and seeds as Ray tasks on a real local Ray runtime (2 CPUs, started here)."""

from __future__ import annotations

import sqlite3

import pytest

ray = pytest.importorskip("ray", reason="recurrent_rl[ray] (ray) is not installed")
pytest.importorskip("optuna", reason="recurrent_rl[tune] (optuna) is not installed")

from recurrent_rl.config.presets import load_preset  # noqa: E402
from recurrent_rl.io import run_folder as folders  # noqa: E402
from recurrent_rl.sweeps.seeds import run_seeds  # noqa: E402
from recurrent_rl.sweeps.tune import run_study  # noqa: E402

TINY = [
    "n_timesteps=256",
    "n_envs=2",
    "batch_size=64",
    "eval.freq=128",
    "eval.episodes=2",
    "eval.final_episodes=2",
    "checkpoint.freq=0",
]
SPACE = "n_steps: [16, 32]\nminibatches: [1, 2]\nsequence_length: [8, null]\nhidden_size: [8, 16]\nnum_layers: 1\n"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_two_trials_run_as_ray_tasks_with_run_folders_and_study_rows(local_ray, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    result = run_study(
        load_preset("repeat-first-gru", TINY),
        trials=2,
        space=space,
        runs_dir=tmp_path,
        study="ray",
        sampler="random",
        executor="ray",
        workers=2,
    )
    with sqlite3.connect(tmp_path / "tune" / "ray.db") as db:
        assert db.execute("SELECT number, state FROM trials ORDER BY number").fetchall() == [
            (0, "COMPLETE"),
            (1, "COMPLETE"),
        ]
    for row in result.rows:
        assert folders.read_run_info(row["run_dir"])["status"] == "finished"
    assert result.best_preset is not None and result.best_preset.is_file()


def test_two_seeds_run_as_ray_tasks(local_ray, tmp_path):
    report = run_seeds(load_preset("repeat-first-gru", TINY), [0, 1], tmp_path, "g", executor="ray")
    assert [r.error for r in report.results] == [None, None]
    for r in report.results:
        assert folders.read_run_info(r.run_dir)["status"] == "finished" and r.host
    assert (tmp_path / "g" / "seeds.json").is_file()
