"""Many seeds (recurrent-rl train --seeds): parsing, the statistics by hand, and a real two-seed run."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from recurrent_rl.cli.main import main
from recurrent_rl.config.presets import load_preset
from recurrent_rl.errors import UserInputError
from recurrent_rl.io import run_folder as folders
from recurrent_rl.sweeps.executors import require_ray
from recurrent_rl.sweeps.seeds import REPORT, SeedResult, parse_seeds, run_seeds, summarize
from recurrent_rl.sweeps.stats import iqm, stratified_bootstrap

TINY = [
    "n_timesteps=256",
    "n_envs=2",
    "batch_size=64",
    "eval.freq=128",
    "eval.episodes=2",
    "eval.final_episodes=2",
    "checkpoint.freq=0",
]
SCORES = [10.0, 2.0, 7.0, 4.0, 9.0, 1.0, 8.0, 3.0, 6.0, 5.0]


def test_seed_specs_parse_and_bad_ones_are_one_clear_error():
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("0-2, 10") == [0, 1, 2, 10]
    for text, message in (
        ("5-2", "is empty"),
        ("a", "expected seeds"),
        ("1,1", "more than once"),
        ("-1", "expected seeds"),
        ("", "expected seeds"),
    ):
        with pytest.raises(UserInputError, match=message):
            parse_seeds(text)


def test_iqm_is_the_mean_of_the_middle_half_by_hand():
    # 10 scores: int(0.25 * 10) = 2 dropped at each end, the mean of 3, 4, 5, 6, 7, 8
    assert iqm(SCORES) == pytest.approx(5.5)
    assert iqm([1.0, 2.0, 3.0, 100.0]) == pytest.approx(2.5)  # 1 dropped at each end
    assert iqm([4.0, 1.0, 9.0]) == pytest.approx(14 / 3)  # int(0.75) = 0: nothing dropped


def test_stratified_bootstrap_equals_a_hand_computed_resampling():
    estimate = stratified_bootstrap(SCORES, iqm, reps=500, seed=3)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 10, size=(500, 10, 1))  # per resample, per run, per task: which run
    by_hand = [iqm(np.asarray(SCORES)[draw[:, 0]]) for draw in draws]
    assert estimate.value == pytest.approx(5.5)
    assert (estimate.low, estimate.high) == pytest.approx(tuple(np.quantile(by_hand, [0.025, 0.975])))
    constant = stratified_bootstrap([3.0] * 5, iqm, reps=100)
    assert (constant.value, constant.low, constant.high) == (3.0, 3.0, 3.0)
    # two tasks: each column is resampled on its own, so a task's scores never move to the other
    two = stratified_bootstrap([[0.0, 100.0], [0.0, 100.0]], np.mean, reps=50)  # type: ignore[arg-type]
    assert (two.low, two.high) == (50.0, 50.0)


def test_the_percentile_interval_is_the_binomial_one_derived_by_hand():
    """An independent check of the bootstrap (rliable 1.2.0 does not import beside pandas 3): the mean
    of 10 runs scoring 0 or 1 five times each, resampled with replacement, is Binomial(10, 1/2) / 10.
    Its 2.5% quantile is 2/10 (P(X <= 1) = 11/1024 < 0.025 < P(X <= 2) = 56/1024) and its 97.5%
    quantile 8/10 (P(X <= 7) = 968/1024 < 0.975 < P(X <= 8) = 1013/1024), so with enough
    resamples the 95% percentile interval is exactly [0.2, 0.8]. Two tasks are resampled apart:
    a task whose runs all score 1 keeps its mean 1, and the mean over tasks lies in [0.6, 0.9]."""
    scores = [0.0] * 5 + [1.0] * 5
    one = stratified_bootstrap(scores, np.mean, reps=20_000, seed=1)
    assert (one.value, one.low, one.high) == (0.5, pytest.approx(0.2), pytest.approx(0.8))
    two = stratified_bootstrap([[s, 1.0] for s in scores], np.mean, reps=20_000, seed=2)  # type: ignore[arg-type]
    assert (two.value, two.low, two.high) == (0.75, pytest.approx(0.6), pytest.approx(0.9))


def test_summary_counts_the_threshold_and_leaves_failed_seeds_out():
    results = [SeedResult(i, f"r{i}", final_return=s) for i, s in enumerate(SCORES)]
    results.append(SeedResult(10, "r10", error="crashed"))
    summary = summarize(results, threshold=8.0, reps=200)
    assert summary["seeds_finished"] == 10 and summary["at_threshold"] == 3
    assert summary["iqm"]["value"] == pytest.approx(5.5)
    assert summary["mean"]["value"] == pytest.approx(5.5) and summary["median"]["value"] == pytest.approx(5.5)


def test_two_seeds_in_parallel_processes_write_run_folders_and_the_report(tmp_path):
    report = run_seeds(load_preset("repeat-first-gru", TINY), [0, 1], tmp_path, "group", workers=2)
    data = json.loads((tmp_path / "group" / REPORT).read_text())
    assert [s["seed"] for s in data["seeds"]] == [0, 1]
    for seed in data["seeds"]:
        assert folders.read_run_info(seed["run_dir"])["status"] == "finished"
        on_disk = json.loads((tmp_path / "group" / f"seed{seed['seed']}" / folders.EVAL_REPORT).read_text())
        assert seed["final_return"] == pytest.approx(on_disk["mean_return"])
        assert [step for step, _ in seed["curve"]] == [128, 256]
    finals = [s["final_return"] for s in data["seeds"]]
    assert data["summary"]["iqm"]["value"] == pytest.approx(iqm(finals))
    assert (tmp_path / "group" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "IQM" in report.table()


def test_seed_and_backend_flags_are_checked_before_anything_runs(tmp_path, capsys, monkeypatch):
    for argv, message in (
        (["--seeds", "5-2"], "is empty"),
        (["--executor", "ray"], "only with --seeds"),
        (["--seeds", "0-1", "--seed", "3"], "cannot be combined"),
        (["--seeds", "0-1", "--workers", "0"], "at least 1"),
    ):
        assert main(["train", "--runs-dir", str(tmp_path), *argv]) == 2
        assert message in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(UserInputError, match=r"pip install 'recurrent_rl\[ray\]'"):
        require_ray()
    assert main(["train", "--runs-dir", str(tmp_path), "--seeds", "0-1", "--executor", "ray"]) == 2
    assert "recurrent_rl[ray]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_seed_specs_are_parsed_in_linear_time_with_a_cap_and_a_range():
    import tracemalloc

    from recurrent_rl.config.train import MAX_SEED
    from recurrent_rl.sweeps.seeds import MAX_SEEDS

    assert parse_seeds(f"0-{MAX_SEEDS - 1}") == list(range(MAX_SEEDS))
    tracemalloc.start()  # refused before expanding: no list of the range's seeds is ever built
    with pytest.raises(UserInputError, match=f"more than {MAX_SEEDS} seeds"):
        parse_seeds("0-300000")  # hung in a quadratic duplicate check
    with pytest.raises(UserInputError, match=f"more than {MAX_SEEDS} seeds"):
        parse_seeds("0-2000000000")  # refused before the range is expanded
    with pytest.raises(UserInputError, match=f"more than {MAX_SEEDS} seeds"):
        parse_seeds(",".join(["7"] * 100_000))  # 200 kB of one seed, repeated
    with pytest.raises(UserInputError, match=r"appear more than once"):
        parse_seeds(",".join(str(s) for s in [*range(MAX_SEEDS - 1), 3]))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes: a seed list was expanded"
    assert parse_seeds(str(MAX_SEED)) == [MAX_SEED]
    for spec in (str(MAX_SEED + 1), "4294967296", "0-4294967296", "1" * 25):
        with pytest.raises(UserInputError) as error:
            parse_seeds(spec)
        assert len(str(error.value)) < 300


def test_out_of_range_values_are_refused_before_the_group_folder_exists(tmp_path, capsys):
    for argv, message in (
        (["--seeds", "4294967296"], "out of range"),
        (["--seeds", "0-1", "--threshold", "nan"], "--threshold must be a finite number"),
        (["--seeds", "0-1", "--threshold", "inf"], "--threshold must be a finite number"),
        (["--seeds", "0-1", "--workers", "100000"], "CPU(s)"),
        (["--seeds", "0-1", "--name", "g" * 300], "too long"),
    ):
        assert main(["train", "--runs-dir", str(tmp_path / "runs"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    with pytest.raises(UserInputError, match="finite"):
        run_seeds(load_preset("repeat-first-gru", TINY), [0, 1], tmp_path / "runs", "g", threshold=float("nan"))
    assert not (tmp_path / "runs").exists()


def _kill_on_odd(n: int) -> int:
    """A task whose process SIGKILLs itself for odd arguments (a worker the out-of-memory killer ends)."""
    import os
    import signal

    if n % 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return n * 10


def _fail_on_three(n: int) -> int:
    if n == 3:
        raise ValueError("three")
    return n


def test_a_killed_worker_process_leaves_its_task_marked_and_the_others_finish():
    from recurrent_rl.sweeps.executors import WorkerDied, run_tasks

    results = run_tasks(_kill_on_odd, [0, 1, 2, 3, 4], workers=2)
    assert [r for r in results if not isinstance(r, WorkerDied)] == [0, 20, 40]
    died = [r for r in results if isinstance(r, WorkerDied)]
    assert [results.index(r) for r in died] == [1, 3]
    assert all(r.exitcode == -9 and "was killed by SIGKILL" in str(r) for r in died)
    # a replacement task takes the place of a killed one
    replaced = run_tasks(_kill_on_odd, [1, 2], workers=2, replace=lambda arg, died: arg + 1)
    assert replaced == [20, 20]
    # an exception in a task is raised once every task has ended
    with pytest.raises(ValueError, match="three"):
        run_tasks(_fail_on_three, [1, 2, 3, 4], workers=2)


def test_the_deprecated_backend_flag_is_the_executor_with_a_warning(tmp_path, capsys):
    """``--backend local|ray`` of 0.1.0 still works as ``--executor``, with one warning line."""
    assert main(["train", "--runs-dir", str(tmp_path), "--seeds", "0", "--backend", "local", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "warning: --backend local is deprecated: use --executor local" in err
    assert "--workers must be at least 1" in err


def test_the_deprecated_backend_keyword_is_the_executor_with_a_future_warning(tmp_path):
    from recurrent_rl.sweeps.executors import executor_argument

    assert executor_argument("local", None, "run_seeds") == "local"
    with pytest.warns(FutureWarning, match=r"run_seeds\(backend=\.\.\.\) is deprecated: the word is executor='ray'"):
        assert executor_argument("local", "ray", "run_seeds") == "ray"
