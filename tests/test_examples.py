"""The scripts in examples/ run as a user runs them, each with a tiny budget, in a subprocess."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MEAN_RETURN = r"mean return over {n} episodes: -?\d+\.\d+ ± \d+\.\d+"


def run_example(name: str, *args: object, cwd: Path) -> str:
    """Run ``examples/<name>`` with ``args`` from ``cwd``; its stdout, after checking it ended cleanly."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    assert "Warning" not in result.stderr, f"{name} printed warnings:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("train_and_evaluate")
    return out, run_example("train_and_evaluate.py", "--timesteps", 256, "--episodes", 2, "--out", out, cwd=out)


def test_train_and_evaluate_saves_reloads_and_evaluates(trained):
    out, stdout = trained
    assert (out / "model.zip").is_file() and (out / "vecnormalize.pkl").is_file()
    assert "trained 256 steps" in stdout
    assert re.search(MEAN_RETURN.format(n=2), stdout), stdout


def test_step_by_hand_plays_a_saved_model(trained, tmp_path):
    out, _ = trained
    stdout = run_example("step_by_hand.py", "--model", out / "model.zip", "--episodes", 2, cwd=tmp_path)
    assert "vecnormalize.pkl" in stdout  # the statistics next to the model were found and used
    assert len(re.findall(r"^episode \d: return \d+$", stdout, flags=re.M)) == 2, stdout
    assert "mean return over 2 episodes:" in stdout


def test_step_by_hand_trains_without_a_model(tmp_path):
    stdout = run_example("step_by_hand.py", "--timesteps", 256, "--episodes", 1, cwd=tmp_path)
    assert "trained 256 steps" in stdout and "episode 0: return" in stdout, stdout


def test_pretrain_encoder_fits_exports_and_reuses(tmp_path):
    stdout = run_example(
        "pretrain_encoder.py",
        "--steps",
        400,
        "--epochs",
        2,
        "--timesteps",
        256,
        "--episodes",
        2,
        "--out",
        tmp_path,
        cwd=tmp_path,
    )
    for name in ("trajectories.npz", "encoder.pt", "model.zip", "vecnormalize.pkl"):
        assert (tmp_path / name).is_file(), name
    assert re.search(r"sequence model: 2 epochs, validation R² -?\d\.\d{3}", stdout), stdout
    assert "trained 256 steps with the frozen encoder" in stdout
    assert re.search(MEAN_RETURN.format(n=2), stdout), stdout


def test_custom_env_trains_evaluates_and_wraps(tmp_path):
    stdout = run_example("custom_env.py", "--timesteps", 512, "--episodes", 4, cwd=tmp_path)
    assert "trained 512 steps on RememberCue (delay 5)" in stdout
    assert re.search(MEAN_RETURN.format(n=4) + r" .*success rate \d\.\d\d", stdout), stdout
    assert "CartPole-v1 masked: observation" in stdout and "observations of shape (4,)" in stdout


def test_the_examples_readme_lists_every_script():
    readme = (EXAMPLES / "README.md").read_text()
    for script in sorted(EXAMPLES.glob("*.py")):
        assert f"examples/{script.name}" in readme, f"{script.name} is missing from examples/README.md"
