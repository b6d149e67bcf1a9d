"""Received model files are data: crafted safe copies, checkpoints, ONNX graphs and encoders.

The crafted files come from :mod:`tests.crafted`, which writes each from a valid one:

- an env id ``evil_module:Env-v0`` in an ONNX graph's metadata or a run's ``config.yaml`` never
  imports ``evil_module`` (a marker file it would write is never written), in-process and through
  the real ``python -m recurrent_rl.export.play`` started in the file's folder;
- every crafted size is refused before anything is allocated: the loaders run in a subprocess
  under an address-space limit of a few GiB, and each gives a refusal, never a MemoryError;
- every crafted field gives one error line naming the file, exit code 2, no traceback, through
  the command line's ``main`` (``evaluate``, ``export``, ``train --resume``, ``train --encoder``,
  ``python -m recurrent_rl.export.play``); ``--resume`` refuses before it writes anything;
- a run whose final weights were renamed before its first ``model.json`` (a kill between the two
  renames of ``save_safe``) is read by ``evaluate`` and ``export`` without ``--resume``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recurrent_rl.export.play import main as play_main
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import cli
from tests import crafted
from tests.test_trust import TINY

ROOT = Path(__file__).resolve().parents[1]
CAP = 2 << 30  # address space the loaders may map beyond what the process maps after importing them


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny interrupted run (VecNormalize on, a final model and a checkpoint, each with its safe
    copy), its ONNX export and an encoder file."""
    from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
    from recurrent_rl.runs.training import train
    from recurrent_rl.supervised.encoder import export_encoder
    from tests.test_encoder import trained_like_model

    folder = tmp_path_factory.mktemp("received")
    config = load_preset(DEFAULT_PRESET, [*TINY, "n_timesteps=64", "checkpoint.freq=32", "eval.freq=64"])
    run = train(config, folder, name="run", progress_bar=False).run_dir
    text = (run / runs.CONFIG).read_text().replace("n_timesteps: 64", "n_timesteps: 128")
    (run / runs.CONFIG).write_text(text)
    runs.update_run_info(run, status="interrupted (SIGTERM)")
    assert cli.main(["export", str(run)]) == 0
    export_encoder(trained_like_model(), folder / "encoder.pt", {"env_id": "pomdp/CartPoleNoVel-v1"})
    return folder


def _run_copy(base: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    return run


def _checkpoint(run: Path) -> Path:
    checkpoint = runs.latest_checkpoint(run)
    assert checkpoint is not None
    return checkpoint / "model"


def _one_line(capsys, code: int, command: str = "") -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"{command}: error: " if command else "error: "), err
    assert len(lines[0]) < 1500, lines[0][:300]
    return lines[0]


# --- env ids are data --------------------------------------------------------------------------------


def test_an_env_id_in_an_onnx_file_never_imports_its_module(base, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "ran"
    env_id = crafted.evil_module(tmp_path, marker)
    graph = crafted.edit_onnx(base / "run" / "model.onnx", tmp_path / "model.onnx", crafted.setter("env_id", env_id))
    monkeypatch.syspath_prepend(str(tmp_path))
    line = _one_line(capsys, play_main([str(graph), "--episodes", "1"]))
    assert "evil_module" in line and "--env" in line and not marker.exists()
    assert "evil_module" not in sys.modules
    # the real runner, started in the file's folder (so the module is importable from there)
    done = subprocess.run(
        [sys.executable, "-m", "recurrent_rl.export.play", "model.onnx", "--episodes", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not marker.exists()
    # the same id typed by the user is theirs to import
    assert play_main([str(graph), "--env", env_id, "--episodes", "1"]) == 0
    assert marker.exists()


def test_export_records_no_unchecked_env_id(base, tmp_path, monkeypatch, capsys):
    from recurrent_rl.export.onnx import read_metadata
    from recurrent_rl.export.safe import read_safe_config

    run = _run_copy(base, tmp_path)
    marker = tmp_path / "ran"
    env_id = crafted.evil_module(run, marker)
    monkeypatch.syspath_prepend(str(run))
    monkeypatch.chdir(run)
    text = (run / runs.CONFIG).read_text()
    (run / runs.CONFIG).write_text(text.replace("env: pomdp/CartPoleNoVel-v1", f"env: {env_id}"))
    assert cli.main(["export", str(run), "--out", str(tmp_path / "a.onnx")]) == 0
    assert "records no env id" in capsys.readouterr().err
    assert read_metadata(tmp_path / "a.onnx")["env_id"] is None
    assert cli.main(["export", str(run), "--format", "safe", "--out", str(tmp_path / "copy")]) == 0
    assert read_safe_config(tmp_path / "copy")["env_id"] is None
    assert not marker.exists()
    # given with --env, the user's id is recorded (and still not imported by the export)
    assert cli.main(["export", str(run), "--out", str(tmp_path / "b.onnx"), "--env", env_id]) == 0
    assert read_metadata(tmp_path / "b.onnx")["env_id"] == env_id and not marker.exists()
    # a registered id in the run's config is recorded as before
    (run / runs.CONFIG).write_text(text)
    assert cli.main(["export", str(run), "--out", str(tmp_path / "c.onnx")]) == 0
    assert read_metadata(tmp_path / "c.onnx")["env_id"] == "pomdp/CartPoleNoVel-v1"


# --- sizes: refused before allocation, under a memory cap ----------------------------------------------


def _capped(items: list[tuple[str, Path]]) -> list[dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.crafted", str(CAP), *(f"{kind}={path}" for kind, path in items)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_crafted_sizes_are_refused_before_allocation_under_a_memory_cap(base, tmp_path):
    items: list[tuple[str, Path]] = []
    for kind in ("safe", "safe-resume"):  # the safe copy as evaluate and export read it, and as --resume does
        items.append((kind, base / "run" / "model" if kind == "safe" else _checkpoint(base / "run")))
    for index, name in enumerate(crafted.SAFE_SIZES):
        folder = tmp_path / f"safe{index}"
        folder.mkdir()
        source = _checkpoint(base / "run")
        for suffix in (".json", ".safetensors", ".optimizer.safetensors"):
            shutil.copy(source.with_name("model" + suffix), folder / ("model" + suffix))
        crafted.craft_safe(folder / "model", name)
        items.append(("safe-resume", folder / "model"))
    huge = tmp_path / "huge"
    shutil.copytree(base / "run", huge, ignore=shutil.ignore_patterns("checkpoints", "*.zip", "*.pkl"))
    crafted.huge_sparse_file(huge / "model.json")
    items.append(("safe", huge / "model"))
    items.append(("onnx", base / "run" / "model.onnx"))
    for index, how in enumerate(crafted.ONNX_SIZES.values()):
        items.append(("onnx", crafted.edit_onnx(base / "run" / "model.onnx", tmp_path / f"{index}.onnx", **how)))
    items.append(("encoder", base / "encoder.pt"))
    for index, edit in enumerate(crafted.ENCODER_SIZES.values()):
        items.append(("encoder", crafted.edit_encoder(base / "encoder.pt", tmp_path / f"enc{index}.pt", edit)))

    results = _capped(items)
    assert len(results) == len(items)
    valid = {0, 1, 2 + len(crafted.SAFE_SIZES) + 1, len(items) - len(crafted.ENCODER_SIZES) - 1}
    for index, result in enumerate(results):
        if index in valid:  # the files as written: they load under the same cap
            assert result["outcome"] == "loaded", result
        else:
            assert result["outcome"] == "refused", result
            assert len(result["message"]) < 1500 and "\n" not in result["message"], result["message"][:300]


def test_the_onnx_runner_refuses_a_state_larger_than_memory(base):
    from recurrent_rl.errors import UserInputError
    from recurrent_rl.export.play import OnnxPolicy

    policy = OnnxPolicy(base / "run" / "model.onnx")
    assert policy.initial_state(3)["state.actor.0"].shape == (1, 3, 64)
    with pytest.raises(UserInputError, match="memory state of 1000000000000 envs .* refused before allocating"):
        policy.initial_state(10**12)


# --- fields: one line through the command line -------------------------------------------------------


@pytest.mark.parametrize("name", [*crafted.SAFE_FIELDS, *crafted.SAFE_TENSORS])
def test_a_crafted_safe_copy_gives_one_line(base, tmp_path, capsys, monkeypatch, name):
    """evaluate and export read the final model, --resume the checkpoint (with its optimizer state,
    which only checkpoints hold: the optimizer's cases are crafted there alone)."""
    import recurrent_rl.runs.resume as resuming

    run = _run_copy(base, tmp_path)
    crafted.craft_safe(_checkpoint(run), name)
    if "optimizer" not in name:
        crafted.craft_safe(run / "model", name)
        line = _one_line(capsys, cli.main(["evaluate", str(run), "--episodes", "1"]), "recurrent-rl evaluate")
        assert "model." in line, line
        out = tmp_path / "x.onnx"
        line = _one_line(capsys, cli.main(["export", str(run), "--out", str(out)]), "recurrent-rl export")
        assert "model." in line and not out.exists(), line
    # --resume refuses before it writes anything, before it even builds the envs
    monkeypatch.setattr(resuming, "make_training_env", lambda *args: pytest.fail("the envs were built"))
    before = {path: path.read_bytes() for path in (run / runs.CONFIG, run / runs.RUN_INFO)}
    line = _one_line(capsys, cli.main(["train", "--resume", str(run)]), "recurrent-rl train")
    assert "model." in line, line
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (base / "run" / "checkpoints").iterdir()
    )


@pytest.mark.parametrize("name", list(crafted.ONNX_FIELDS))
def test_a_crafted_onnx_metadata_gives_one_line(base, tmp_path, capsys, name):
    graph = crafted.edit_onnx(base / "run" / "model.onnx", tmp_path / "model.onnx", crafted.ONNX_FIELDS[name])
    line = _one_line(capsys, play_main([str(graph), "--episodes", "1"]))
    assert "model.onnx" in line or "env" in line, line


@pytest.mark.parametrize("name", [*crafted.ENCODER_FIELDS, *crafted.ENCODER_SIZES])
def test_a_crafted_encoder_gives_one_line(base, tmp_path, capsys, name):
    edit = {**crafted.ENCODER_FIELDS, **crafted.ENCODER_SIZES}[name]
    path = crafted.edit_encoder(base / "encoder.pt", tmp_path / "encoder.pt", edit)
    args = ["train", "--encoder", str(path), "--dry-run", "--runs-dir", str(tmp_path / "runs")]
    line = _one_line(capsys, cli.main(args), "recurrent-rl train")
    assert "encoder.pt" in line, line


def test_the_valid_files_pass_the_same_commands(base, tmp_path, capsys):
    """The controls: the files as written load through the same commands."""
    run = _run_copy(base, tmp_path)
    assert cli.main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert play_main([str(run / "model.onnx"), "--episodes", "1"]) == 0
    args = ["train", "--encoder", str(base / "encoder.pt"), "--dry-run", "--runs-dir", str(tmp_path / "runs")]
    assert cli.main(args) == 0
    assert cli.main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()


# --- the kill window ---------------------------------------------------------------------------------


KILLED_SAVE = """
import os, sys
from pathlib import Path
from recurrent_rl.export.safe import load_safe
from recurrent_rl.io import run_folder as folders
from recurrent_rl.runs import checkpoints
run = Path(sys.argv[1])
model = load_safe(run / "model", device="cpu")
for name in ("model.zip", "model.safetensors", "model.json", "model.onnx"):
    (run / name).unlink()
replace = os.replace
def replace_then_die(src, dst, *args, **kwargs):
    replace(src, dst, *args, **kwargs)
    if Path(dst).name == "model.safetensors":
        os._exit(9)  # killed right after this rename: no finally runs, as with SIGKILL
os.replace = replace_then_die
checkpoints.save_model(model, run / folders.MODEL)
"""


def test_a_run_killed_between_the_two_renames_of_its_first_safe_copy_is_readable(base, tmp_path, capsys):
    """The final model.safetensors was renamed into place, the process died before its first
    model.json: evaluate and export read the JSON that waits in its leftover folder, move
    nothing, and never suggest --trust-pickle."""
    run = _run_copy(base, tmp_path)
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(run)], cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 9, done.stderr[-2000:]
    assert (run / "model.safetensors").is_file() and not (run / "model.json").exists()
    assert list(run.glob(".model.json.*.tmp/model.json"))
    leftovers = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert cli.main(["export", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "trust-pickle" not in out + err and "checkpoint" not in err
    assert sorted(p.name for p in run.iterdir()) == sorted([*leftovers, "model.onnx"])
