"""Logs a user reads without TensorBoard: progress.csv (SB3's CSV output format), evaluations.npz
(SB3 EvalCallback's layout) and a Weights & Biases run (offline mode), each read back with
csv / NumPy / the run's own log file and compared with the TensorBoard events of the same run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recurrent_rl.config.presets import load_preset
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs.training import resume, train

SMALL = [
    "n_envs=2",
    "n_steps=32",
    "batch_size=64",
    "eval.freq=128",
    "eval.episodes=3",
    "eval.final_episodes=2",
    "checkpoint.freq=256",
]


def config(*extra: str):
    return load_preset("repeat-first-gru", [*SMALL, *extra])


def tensorboard_scalars(run: Path) -> dict[tuple[str, int], list[float]]:
    """(tag, step) -> the values TensorBoard holds for it."""
    events = EventAccumulator(str(run / runs.TENSORBOARD), size_guidance={"scalars": 0})
    events.Reload()
    scalars: dict[tuple[str, int], list[float]] = {}
    for tag in events.Tags()["scalars"]:
        for event in events.Scalars(tag):
            scalars.setdefault((tag, event.step), []).append(event.value)
    return scalars


def csv_values(run: Path) -> dict[tuple[str, int], list[float]]:
    """(column, time/total_timesteps) -> the values of progress.csv's rows, read with csv."""
    values: dict[tuple[str, int], list[float]] = {}
    with open(run / runs.PROGRESS, newline="") as file:
        for row in csv.DictReader(file):
            step = int(float(row["time/total_timesteps"]))
            for key, text in row.items():
                if text and key != "time/total_timesteps":
                    values.setdefault((key, step), []).append(float(text))
    return values


def assert_same(logged: dict, expected: dict, what: str) -> None:
    """Every TensorBoard value is in ``logged`` at its step (TensorBoard stores float32)."""
    assert expected
    for key, tb_values in expected.items():
        assert key in logged, f"{what} lacks {key}"
        assert sorted(logged[key]) == pytest.approx(sorted(tb_values), rel=1e-6, abs=1e-6), (what, key)


def test_progress_csv_and_evaluations_npz_hold_the_tensorboard_values(tmp_path):
    result = train(config("n_timesteps=512"), tmp_path, "run", progress_bar=False)
    run = result.run_dir
    scalars = tensorboard_scalars(run)
    logged = csv_values(run)
    assert_same(logged, scalars, "progress.csv")
    # the CSV holds what TensorBoard holds, and the values SB3 keeps out of TensorBoard
    extra = {key for key, _ in logged} - {key for key, _ in scalars}
    assert extra == {"time/iterations", "time/time_elapsed", "train/n_updates"}

    with np.load(run / runs.EVALUATIONS) as data:
        assert sorted(data.files) == ["ep_lengths", "results", "successes", "timesteps"]
        timesteps, results, lengths = data["timesteps"], data["results"], data["ep_lengths"]
        successes = data["successes"]
    assert timesteps.tolist() == [128, 256, 384, 512]
    assert results.shape == lengths.shape == successes.shape == (4, 3)
    for index, step in enumerate(timesteps.tolist()):
        assert results[index].mean() == pytest.approx(scalars[("eval/mean_reward", step)][0], rel=1e-6)
        assert results[index].std() == pytest.approx(scalars[("eval/std_reward", step)][0], rel=1e-6, abs=1e-6)
        assert lengths[index].mean() == pytest.approx(scalars[("eval/mean_ep_length", step)][0])
        assert successes[index].mean() == pytest.approx(scalars[("eval/success_rate", step)][0])


def test_a_resumed_run_keeps_its_rows_and_drops_those_after_its_checkpoint(tmp_path):
    first = train(config("n_timesteps=256"), tmp_path, "run", progress_bar=False)
    run = first.run_dir
    # what a process killed after its checkpoint at 256 would have logged later: dropped on resume
    with open(run / runs.PROGRESS, "a") as file:
        file.write(",".join(["999"] * len(next(csv.reader(open(run / runs.PROGRESS))))) + "\n")
    before = {key: value for key, value in csv_values(run).items() if key[1] <= 256}
    resume(run, 512, progress_bar=False)
    logged = csv_values(run)
    assert all(logged[key][: len(value)] == value for key, value in before.items())
    assert not [key for key in logged if key[1] == 999]
    assert_same(logged, tensorboard_scalars(run), "progress.csv after resume")
    with np.load(run / runs.EVALUATIONS) as data:
        assert data["timesteps"].tolist() == [128, 256, 384, 512]


def wandb_history(path: Path) -> list[dict[str, float]]:
    """The history rows of a W&B run's transaction log (``run-<id>.wandb``): LevelDB's log format
    (32 KiB blocks of records with a 7-byte header each) after W&B's 7-byte file header, each
    record a protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, rows = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                )
    return rows


def test_track_wandb_writes_an_offline_run_with_the_runs_metrics(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb", reason="recurrent_rl[wandb] is not installed")
    from recurrent_rl.cli.main import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    argv = ["train", "--preset", "repeat-first-gru", *(f"--set={s}" for s in SMALL), "--timesteps", "256"]
    assert main([*argv, "--runs-dir", str(tmp_path), "--name", "run", "--track", "wandb", "--no-progress"]) == 0
    run = tmp_path / "run"
    (log,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    logged: dict[tuple[str, int], list[float]] = {}
    for row in wandb_history(log):
        step = int(row["_step"])
        for key, value in row.items():
            if not key.startswith("_") and isinstance(value, (int, float)) and math.isfinite(value):
                logged.setdefault((key, step), []).append(float(value))
    # W&B merges what is logged at one step into one row, the later value of a key winning
    last = {key: values[-1:] for key, values in tensorboard_scalars(run).items()}
    assert_same(logged, last, "the W&B run")
    assert ("eval/final_mean_reward", 256) in logged  # logged after training ended, before the run closed
