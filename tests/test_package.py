"""A shareable agent: ``recurrent-rl package RUN --out DIR`` writes a folder that evaluates, copied
alone into a fresh folder, with no other argument; its model card's metadata reads back; a safe
copy records its env id; the folder is read as data (an env id naming a module is refused)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recurrent_rl.runs.package import CARD, LIBRARY_NAME, REPLAY, read_card_metadata
from tests.test_cli import TINY, run_cli, snapshot


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    runs_dir = tmp_path_factory.mktemp("runs")
    assert run_cli("train", "--runs-dir", runs_dir, "--name", "tiny", *TINY) == 0
    return runs_dir / "tiny"


@pytest.fixture(scope="module")
def packaged(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("share") / "agent"
    assert run_cli("package", tiny_run, "--out", out, "--episodes", "3", "--no-progress") == 0
    return out


def test_package_writes_the_hub_layout(packaged):
    names = sorted(path.name for path in packaged.iterdir())
    assert names == sorted([CARD, "model.safetensors", "model.json", "config.yaml", "eval.json", REPLAY])
    assert json.loads((packaged / "model.json").read_text())["env_id"] == "pomdp/CartPoleNoVel-v1"
    import imageio.v3 as iio

    frames = iio.imread(packaged / REPLAY)  # (N, H, W, C)
    assert len(frames) > 1 and min(frames.shape[1:3]) >= 256


def test_card_metadata_reads_back(packaged):
    metadata = read_card_metadata((packaged / CARD).read_text(encoding="utf-8"))
    report = json.loads((packaged / "eval.json").read_text())
    assert metadata["library_name"] == LIBRARY_NAME
    assert "reinforcement-learning" in metadata["tags"] and "pomdp/CartPoleNoVel-v1" in metadata["tags"]
    (result,) = metadata["model-index"][0]["results"]
    assert result["task"]["type"] == "reinforcement-learning"
    assert result["dataset"]["name"] == "pomdp/CartPoleNoVel-v1"
    (metric,) = result["metrics"]
    assert metric["type"] == "mean_reward"
    assert metric["value"] == f"{report['mean_return']:.2f} +/- {report['std_return']:.2f}"
    card = (packaged / CARD).read_text(encoding="utf-8")
    assert "memory-gru" in metadata["tags"]
    assert "## Hyperparameters" in card and "n_steps: 16" in card and "recurrent-rl evaluate ." in card


def test_a_copy_alone_evaluates_with_no_other_argument(packaged, tmp_path, monkeypatch, capsys):
    """The folder copied into an empty place (no run folder, no other file) evaluates as packaged:
    the same episodes, the same returns; load_safe(DIR) acts as the packaged model."""
    fresh = tmp_path / "downloads" / "agent"
    shutil.copytree(packaged, fresh)
    monkeypatch.chdir(tmp_path / "downloads")
    capsys.readouterr()
    assert run_cli("evaluate", "agent", "--episodes", "3", "--json", "again.json", "--no-progress") == 0
    again, packaged_report = json.loads(Path("again.json").read_text()), json.loads((fresh / "eval.json").read_text())
    assert again["env"] == packaged_report["env"]
    assert again["episode_returns"] == packaged_report["episode_returns"]

    from recurrent_rl import load_safe

    model = load_safe(fresh)
    obs = np.zeros((1, *model.observation_space.shape), dtype=np.float32)
    action, state = model.predict(obs, deterministic=True)
    assert model.action_space.contains(action[0]) and state is not None


def test_safe_export_to_a_folder_records_the_env_and_evaluates_alone(tiny_run, tmp_path, monkeypatch):
    out = tmp_path / "exported"
    assert run_cli("export", tiny_run, "--format", "safe", "--out", f"{out}/") == 0
    assert json.loads((out / "model.json").read_text())["env_id"] == "pomdp/CartPoleNoVel-v1"
    monkeypatch.chdir(tmp_path)
    assert run_cli("evaluate", "exported", "--episodes", "2", "--no-progress") == 0


def test_an_env_id_naming_a_module_is_refused_and_never_imported(packaged, tmp_path, capsys):
    """A downloaded folder whose model.json names ``module:Env`` is refused before anything imports it."""
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(packaged / name, crafted / name)
    config = json.loads((crafted / "model.json").read_text())
    config["env_id"] = "tests_package_evil_module:Evil-v0"
    (crafted / "model.json").write_text(json.dumps(config))
    import sys

    capsys.readouterr()
    assert run_cli("evaluate", crafted, "--episodes", "1", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "never imported" in err and "Traceback" not in err
    assert "tests_package_evil_module" not in sys.modules


def test_package_refuses_a_folder_with_files_and_changes_nothing(tiny_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    assert run_cli("package", tiny_run, "--out", out) == 2
    assert "holds files" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert run_cli("package", tmp_path, "--out", tmp_path / "new") == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
