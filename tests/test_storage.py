"""Full disks, read-only folders and names too long: one ``error:`` line and no traceback, run.json
says what happened, nothing already written is lost, no empty ``.lock`` is left.

The disks are small tmpfs mounts (``mount -t tmpfs -o size=...``, which needs root; the tests are
skipped with the reason where mounting is not allowed), made read-only with ``mount -o
remount,ro`` (a chmod would not stop root).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from recurrent_rl.config.presets import load_preset
from recurrent_rl.export.safe import load_safe
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import cli
from recurrent_rl.runs.training import resume, train
from tests.test_cli import TINY, tiny_run  # noqa: F401  tiny_run: a finished run, trained once for this module

TINY_SET = [TINY[i + 1] for i, arg in enumerate(TINY) if arg == "--set"]  # n_envs=2, n_steps=16, ...


@pytest.fixture
def disk(tmp_path):
    """``disk(size)``: a new tmpfs of that size (``"2m"``) under tmp_path, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs)")
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):  # the tmpfs, and a read-only view a failed test left over it
        while (
            os.path.ismount(path) and subprocess.run(["umount", "-l", str(path)], capture_output=True).returncode == 0
        ):
            pass


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


def read_only_view(path: Path) -> None:
    """Make ``path`` read-only for every file opened from now on (a read-only bind mount over it): a
    file system with files open for writing cannot be remounted read-only, a new view of it can."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)


def writable_again(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True, capture_output=True)  # the read-only view


def fill(path: Path) -> None:
    """Fill the file system of ``path`` to its last byte."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *fragments: str) -> str:
    """The single error line of ``err``, which holds every fragment and no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders of interrupted writes, and locks."""
    return [p for p in folder.rglob(".*") if p.name != ".lock" or p.stat().st_size == 0] + list(folder.rglob(".lock"))


def test_a_full_disk_stops_training_with_one_line_and_resume_finishes_once_there_is_room(disk, capsys):
    space = disk("2m")  # room for config, best model and one checkpoint (~0.9 MB each), not for two
    code, out, err = run_cli(capsys, "train", "--runs-dir", space, "--name", "full", *TINY)
    run = space / "full"
    assert code == 1
    one_line(err, "training stopped at step", "the disk is full", f"recurrent-rl train --resume {run}")
    status = runs.read_run_info(run)["status"]
    assert status.startswith("failed at step") and "the disk is full" in status
    kept = runs.checkpoint_dirs(run)
    assert kept, "the checkpoint written before the disk filled up is gone"
    load_safe(kept[-1][1] / runs.MODEL)  # intact and loadable
    assert leftovers(run) == [], "a temporary file or a lock was left behind"

    remount(space, "size=32m")
    code, out, err = run_cli(capsys, "train", "--resume", run, "--no-progress")
    assert code == 0, err
    assert runs.read_run_info(run)["status"] == "finished" and runs.checkpoint_dirs(run)[-1][0] == 256


class ReadOnlyAt(BaseCallback):
    """Makes ``disk`` read-only once training passes ``step``."""

    def __init__(self, disk: Path, step: int):
        super().__init__()
        self.disk, self.step, self.done = disk, step, False

    def _on_step(self) -> bool:
        if not self.done and self.num_timesteps >= self.step:
            read_only_view(self.disk)
            self.done = True
        return True


def test_a_run_folder_that_turns_read_only_mid_run_stops_with_one_line_and_keeps_its_checkpoints(disk):
    space = disk("32m")
    config = load_preset("repeat-first-gru", [*TINY_SET, "n_timesteps=256"])
    with pytest.raises(runs.StorageError) as error:
        train(config, space, "ro", progress_bar=False, callbacks=[ReadOnlyAt(space, 100)])
    message = str(error.value)
    assert "training stopped at step" in message and "read-only" in message and "\n" not in message
    assert "run.json could not be updated either" in message  # the same read-only folder
    writable_again(space)
    run = space / "ro"
    assert [step for step, _ in runs.checkpoint_dirs(run)] == [64]  # the one written before, intact
    load_safe(runs.latest_checkpoint(run) / runs.MODEL)
    assert not [p for p in run.rglob(".*") if p.name != ".lock"], "a temporary file was left behind"
    assert resume(run, progress_bar=False).num_timesteps == 256


def test_outputs_on_a_full_disk_are_one_line_and_leave_the_previous_file(tiny_run, disk, capsys):  # noqa: F811
    space = disk("1m")
    (space / "report.json").write_text('{"old": true}\n')
    fill(space)
    for flag, name in (("--json", "report.json"), ("--plot", "plot.png"), ("--video", "episode.gif")):
        code, out, err = run_cli(capsys, "evaluate", tiny_run, "--episodes", 2, flag, space / name, "--no-progress")
        assert code == 1, err
        one_line(err, f"cannot write {space / name}", "the disk is full")
    assert (space / "report.json").read_text() == '{"old": true}\n'
    for argv in (["--out", space / "policy.onnx"], ["--format", "safe", "--out", space / "agent"]):
        code, out, err = run_cli(capsys, "export", tiny_run, *argv)
        assert code == 1, err
        one_line(err, "the disk is full")
    assert sorted(p.name for p in space.iterdir()) == ["filler", "report.json"]


def test_a_read_only_run_folder_is_evaluated_but_not_written(tiny_run, disk, capsys):  # noqa: F811
    space = disk("16m")
    shutil.copytree(tiny_run, space / "run")
    before = {p: p.read_bytes() for p in (space / "run").rglob("*") if p.is_file()}
    remount(space, "ro")
    code, out, err = run_cli(capsys, "evaluate", space / "run", "--episodes", 2, "--no-progress")
    assert code == 0 and "return" in out, err
    code, out, err = run_cli(capsys, "evaluate", space / "run", "--json", space / "run/again.json")
    assert code == 2
    one_line(err, "cannot write there (Read-only file system)")
    code, out, err = run_cli(capsys, "export", space / "run")  # model.onnx beside the model
    assert code in (1, 2)
    one_line(err, f"cannot write {space / 'run' / 'model.onnx'}")
    code, out, err = run_cli(capsys, "train", "--resume", space / "run", "--timesteps", 512)
    assert code == 1
    one_line(err, f"cannot write {space / 'run' / runs.LOCK}", "read-only", "copy the run folder")
    for argv in (["train", "--runs-dir", space], ["pretrain", "--preset", "cartpole-novel", "--runs-dir", space]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2
        one_line(err, f"--runs-dir {space}: cannot write in {space} (a read-only file system)")
    assert {p: p.read_bytes() for p in (space / "run").rglob("*") if p.is_file()} == before


def test_a_lock_that_cannot_hold_its_pid_is_not_left_empty(disk):
    space = disk("1m")
    (space / "run").mkdir()
    fill(space)
    with pytest.raises(runs.StorageError, match="the disk is full"):
        with runs.run_lock(space / "run"):
            pass
    assert not (space / "run" / runs.LOCK).exists()


def test_pretraining_on_a_full_disk_is_one_line_and_its_run_json_says_so(disk, capsys):
    space = disk("400k")  # the recorded steps fit, the model's checkpoints do not
    code, out, err = run_cli(
        capsys,
        "pretrain",
        "--preset",
        "cartpole-novel",
        "--set",
        "data.n_steps=600",
        "--set",
        "train.epochs=200",
        "--set",
        "model.hidden_size=256",
        "--runs-dir",
        space,
        "--no-progress",
    )
    assert code == 1, err
    one_line(err, "pretraining stopped", "the disk is full")
    (run,) = space.iterdir()
    status = json.loads((run / runs.RUN_INFO).read_text())["status"]
    assert status.startswith("failed: cannot write") and "the disk is full" in status
    assert (run / runs.CONFIG).is_file()  # what was written before is kept
    assert not [p for p in run.rglob(".*")], "a temporary file was left behind"


def test_many_seeds_and_tune_on_a_full_disk_are_one_line(disk, capsys):
    pytest.importorskip("optuna")
    space = disk("1m")
    code, out, err = run_cli(capsys, "train", "--seeds", "0-1", "--workers", "1", "--runs-dir", space, *TINY)
    assert code == 1 and "Traceback" not in err, err
    report = json.loads(next(space.glob("*/seeds.json")).read_text())
    assert all("the disk is full" in seed["error"] for seed in report["seeds"])
    for seed in report["seeds"]:  # a run that failed before its first step was removed
        assert runs.read_run_info(seed["run_dir"]).get("status", "failed at step").startswith("failed at step")
    space = disk("1m")
    tune = ["tune", "--preset", "repeat-first-gru", "--trials", "2", "--runs-dir", space]
    code, out, err = run_cli(capsys, *tune, *(f"--set={s}" for s in TINY_SET), "--set=n_timesteps=256")
    assert code == 1
    one_line(err, "the disk is full")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--name", "n" * 300], "--name nnnnn"),
        (["train", "--runs-dir", "d" * 300], "a name in it is 300 bytes long"),
        (["train", "--runs-dir", "/".join(["d" * 200] * 20)], "the path is"),
        (["train", "--seeds", "0-1", "--runs-dir", "d" * 300], "a name in it is 300 bytes long"),
        (["pretrain", "--preset", "cartpole-novel", "--set", f"name={'n' * 150}"], "at most 100 characters"),
        (["pretrain", "--preset", "cartpole-novel", "--runs-dir", "d" * 300], "a name in it is 300 bytes long"),
        (["evaluate", "RUN", "--json", f"{'j' * 300}.json"], "File name too long"),
        (["export", "RUN", "--out", f"{'o' * 300}.onnx"], "the path is too long"),
    ],
    ids=["name", "runs-dir", "runs-dir-path", "seeds-runs-dir", "pretrain-name", "pretrain-runs-dir", "json", "out"],
)
def test_names_too_long_are_one_line_before_anything_is_written(
    argv,
    fragment,
    tiny_run,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_run) if arg == "RUN" else arg for arg in argv]
    before = sorted(tmp_path.rglob("*"))
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code in (1, 2)
    one_line(err, fragment)
    assert len(one_line(err)) < 400
    assert sorted(tmp_path.rglob("*")) == before
