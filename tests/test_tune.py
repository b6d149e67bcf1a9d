"""recurrent-rl tune: tiny Optuna studies of real training runs (a few hundred steps per trial)."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

optuna = pytest.importorskip("optuna", reason="recurrent_rl[tune] (optuna) is not installed")

from recurrent_rl.cli.main import main  # noqa: E402
from recurrent_rl.config.loading import load_config  # noqa: E402
from recurrent_rl.config.presets import load_preset  # noqa: E402
from recurrent_rl.errors import UserInputError  # noqa: E402
from recurrent_rl.io import run_folder as folders  # noqa: E402
from recurrent_rl.runs.training import train  # noqa: E402
from recurrent_rl.sweeps.space import SpaceError, apply_params, check_space, fit_space, load_space  # noqa: E402
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
SPACE = """\
n_steps: [16, 32]
minibatches: [1, 2]
sequence_length: [8, null]
hidden_size: [8, 16]
num_layers: 1
n_epochs: {low: 1, high: 2}
"""


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def tiny_config(*extra):
    return load_preset("repeat-first-gru", [*TINY, *extra])


def trial_rows(db):
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_a_study_of_three_trials_completes_and_its_best_preset_loads_and_trains(tmp_path, space):
    result = run_study(
        tiny_config(), trials=3, space=space, runs_dir=tmp_path / "runs", study="s", sampler="random", seed=0
    )
    assert trial_rows(tmp_path / "runs/tune/s.db") == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    for number in range(3):
        run = tmp_path / f"runs/tune/s/trial{number:04d}"
        assert folders.read_run_info(run)["status"] == "finished" and (run / folders.EVAL_REPORT).is_file()
    best = result.study.best_trial
    config = load_config(result.best_preset)
    assert config.policy_kwargs.hidden_size == best.params["hidden_size"]
    assert config.n_steps == best.params["n_steps"]
    assert config.batch_size == best.params["n_steps"] * 2 // best.params["minibatches"]
    assert "trial" in result.table() and str(best.number) in result.table()
    assert result.importance is not None and result.importance.read_bytes()[:4] == b"\x89PNG"
    trained = train(config, tmp_path / "again", "best", progress_bar=False)
    assert trained.report is not None and trained.num_timesteps >= 256


def test_an_interrupted_study_resumes_and_finishes_the_rest(tmp_path, space):
    kwargs = dict(space=space, runs_dir=tmp_path / "runs", study="r", sampler="random")
    first = run_study(tiny_config(), trials=1, **kwargs)
    assert first.ran == 1
    second = run_study(tiny_config(), trials=3, **kwargs)
    assert second.ran == 2
    assert [state for _, state in trial_rows(tmp_path / "runs/tune/r.db")] == ["COMPLETE"] * 3
    assert run_study(tiny_config(), trials=3, **kwargs).ran == 0  # already there: nothing runs


def test_pruned_trials_are_marked_pruned_and_their_runs_stop(tmp_path, space):
    prune_all = optuna.pruners.ThresholdPruner(lower=1e9)  # every first evaluation is below it
    result = run_study(
        tiny_config("n_timesteps=512"), trials=2, space=space, runs_dir=tmp_path / "runs", study="p", pruner=prune_all
    )
    assert [state for _, state in trial_rows(tmp_path / "runs/tune/p.db")] == ["PRUNED", "PRUNED"]
    for row in result.rows:
        info = folders.read_run_info(row["run_dir"])
        assert info["status"] == "interrupted (pruned)" and info["num_timesteps"] < 512
    assert result.best_preset is None


def test_the_default_spaces_fit_every_preset_size_and_bad_spaces_are_refused(tmp_path):
    base = tiny_config().to_dict()
    for memory in ("gru", "lstm", "rnn", "transformer"):
        check_space(load_space(memory), {**base, "n_envs": 8})
    assert "gate_bias" not in load_space("rnn")
    values = apply_params(base, {"n_steps": 32, "minibatches": 4, "sequence_length": 64, "learning_rate": 5e-4})
    assert (values["batch_size"], values["sequence_length"], values["learning_rate"]) == (16, None, "lin_0.0005")
    with pytest.raises(SpaceError, match="does not fit"):  # n_envs 1: 32 steps in 8 minibatches of 4, chunks of 16
        check_space(load_space("gru"), {**base, "n_envs": 1})
    fitted = fit_space(load_space("gru"), {**base, "n_envs": 2})  # the default narrowed for 2 envs
    check_space(fitted, {**base, "n_envs": 2})
    assert fitted["minibatches"].choices == (1, 2)
    for text, message in (
        ("batch: [1]", "unknown search parameter 'batch'"),
        ("batch_size: [64]", "set through minibatches"),
        ("gamma: {low: 0.99, high: 0.9}", "empty range"),
        ("hidden_size: []", "empty list"),
        ("n_steps: {low: 16, high: 64}", "give a list of choices"),
        ("ent_coef: {low: 0, high: 0.1, log: true}", "log range needs low > 0"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(SpaceError, match=message):
            load_space("gru", path)


def run_cli(capsys, *argv):
    code = main(["tune", "--preset", "repeat-first-gru", *(f"--set={s}" for s in TINY), *argv])
    return code, capsys.readouterr()


def test_bad_input_is_one_line_and_leaves_the_study_as_it_was(tmp_path, space, capsys):
    runs = str(tmp_path / "runs")
    code, out = run_cli(capsys, "--storage", "nosuchdb://x/y", "--runs-dir", runs)
    assert code == 2 and "cannot open this Optuna storage" in out.err and len(out.err.strip().splitlines()) == 1
    code, out = run_cli(capsys, "--trials", "1", "--space", str(space), "--runs-dir", runs, "--study", "k")
    assert code == 0 and "best preset:" in out.out
    db = tmp_path / "runs/tune/k.db"
    before = trial_rows(db)
    # the same study name with another base config or another search space
    code, out = run_cli(
        capsys, "--trials", "2", "--space", str(space), "--runs-dir", runs, "--study", "k", "--set", "gamma=0.5"
    )
    assert code == 2 and "another base config" in out.err and "gamma" in out.err
    code, out = run_cli(capsys, "--trials", "2", "--runs-dir", runs, "--study", "k")
    assert code == 2 and "another search space" in out.err
    assert trial_rows(db) == before
    other = tmp_path / "bad.yaml"
    other.write_text("dropout: [0.1]")
    code, out = run_cli(capsys, "--space", str(other), "--runs-dir", runs)
    assert code == 2 and "unknown search parameter 'dropout'" in out.err
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["tune", "--sampler", "grid"])
    with pytest.raises(UserInputError, match="unknown sampler"):
        run_study(tiny_config(), trials=1, sampler="grid", runs_dir=runs)


def test_summary_json_names_every_trial_and_the_best(tmp_path, space):
    result = run_study(tiny_config(), trials=2, space=space, runs_dir=tmp_path / "runs", study="j", sampler="random")
    summary = json.loads((result.folder / "summary.json").read_text())
    assert [t["number"] for t in summary["trials"]] == [0, 1]
    assert summary["best"]["preset"] == str(result.best_preset)


def test_trials_over_several_seeds_average_their_final_returns(tmp_path, space):
    result = run_study(
        tiny_config(),
        trials=2,
        space=space,
        runs_dir=tmp_path / "runs",
        study="m",
        sampler="random",
        seed=0,
        trial_seeds=2,
    )
    assert "mean over 2 seeds" in result.table()
    for row in result.rows:
        finals = []
        for seed in (0, 1):  # the preset's seed and the next
            run = tmp_path / f"runs/tune/m/trial{row['number']:04d}/seed{seed}"
            assert folders.read_run_info(run)["status"] == "finished"
            finals.append(json.loads((run / folders.EVAL_REPORT).read_text())["mean_return"])
            assert load_config(run / folders.CONFIG).seed == seed
        assert row["state"] == "COMPLETE" and row["value"] == pytest.approx(sum(finals) / 2)
        assert row["seed_returns"] == pytest.approx(finals)
    # the same study name with another number of seeds per trial is another objective
    with pytest.raises(UserInputError, match="another objective"):
        run_study(tiny_config(), trials=3, space=space, runs_dir=tmp_path / "runs", study="m", trial_seeds=3)
    with pytest.raises(UserInputError, match="final evaluation"):
        run_study(tiny_config("eval.final_episodes=0"), trials=1, trial_seeds=2, runs_dir=tmp_path / "runs")


def test_local_worker_processes_share_the_study(tmp_path, space):
    result = run_study(
        tiny_config(), trials=2, space=space, runs_dir=tmp_path / "runs", study="w", sampler="random", workers=2, seed=0
    )
    assert result.ran == 2
    # a sampler seed is each worker's own: one seed for both proposed the same trial twice
    assert result.rows[0]["params"] != result.rows[1]["params"]
    assert [state for _, state in trial_rows(tmp_path / "runs/tune/w.db")] == ["COMPLETE"] * 2
    assert {row["run_dir"] for row in result.rows} == {
        str((tmp_path / f"runs/tune/w/trial{n:04d}").resolve()) for n in (0, 1)
    }


@pytest.mark.slow
def test_a_study_killed_in_the_middle_of_a_trial_resumes(tmp_path, space, monkeypatch):
    """SIGKILL while trial 0 trains: the same command later marks it failed and runs the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from recurrent_rl.sweeps import study

    runs = tmp_path / "runs"
    argv = [
        sys.executable,
        "-m",
        "recurrent_rl",
        "tune",
        "--preset",
        "repeat-first-gru",
        "--trials",
        "2",
        "--space",
        str(space),
        "--runs-dir",
        str(runs),
        "--study",
        "k",
        "--sampler",
        "random",
        *(f"--set={s}" for s in TINY),
        "--set=n_timesteps=4096",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):  # polls 0.1 s apart
            if folders.read_run_info(runs / "tune/k/trial0000").get("status") == "running":
                break
            assert process.poll() is None, "the trial never started"
            time.sleep(0.1)
        else:
            pytest.fail("the trial never started")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert trial_rows(runs / "tune/k.db") == [(0, "RUNNING")]
    monkeypatch.setattr(study, "GRACE_PERIOD", 1)  # the killed trial's heartbeat is stale after a second
    time.sleep(1.5)
    result = run_study(
        tiny_config("n_timesteps=4096"), trials=2, space=space, runs_dir=runs, study="k", sampler="random"
    )
    assert result.ran == 2
    assert trial_rows(runs / "tune/k.db") == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert result.best_preset is not None and result.best_preset.is_file()


def test_every_value_is_checked_before_the_study_database_exists(tmp_path, space, capsys):
    runs = tmp_path / "runs"
    for argv, message in (
        (["--sampler-seed", "-1"], "--sampler-seed must be in [0, "),
        (["--sampler-seed", "4294967296"], "--sampler-seed must be in [0, "),
        (["--timeout", "nan"], "--timeout must be positive, a finite number"),
        (["--timeout", "inf"], "--timeout must be positive, a finite number"),
        (["--trial-seeds", "1000000"], "--trial-seeds must be in [1, 100]"),
        (["--workers", "100000"], "CPU(s)"),
        (["--study", "s" * 300], "is too long"),
        (["--set", "seed=2147483647", "--trial-seeds", "3"], "passes the largest seed"),
    ):
        code, out = run_cli(capsys, "--space", str(space), "--runs-dir", str(runs), *argv)
        assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1, (argv, out.err)
    assert not runs.exists()  # no study database, no trials folder


@pytest.mark.slow
def test_a_killed_worker_process_fails_its_trial_and_the_study_goes_on(tmp_path, space):
    """SIGKILL to one of two worker processes while its trial trains: that trial is FAIL at once,
    a new worker runs the rest of its share, and the command ends normally, without a traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "runs"
    argv = [
        sys.executable,
        "-m",
        "recurrent_rl",
        "tune",
        "--preset",
        "repeat-first-gru",
        "--trials",
        "3",
        "--workers",
        "2",
        "--space",
        str(space),
        "--runs-dir",
        str(runs),
        "--study",
        "k",
        "--sampler",
        "random",
        *(f"--set={s}" for s in TINY),
        "--set=n_timesteps=2048",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = runs / "tune/k/trial0000" / folders.LOCK
        for _ in range(6000):  # polls 0.05 s apart, until the lock holds the pid of the worker training trial 0
            if lock.is_file() and lock.read_text().strip():
                break
            assert process.poll() is None, "trial 0 never started"
            time.sleep(0.05)
        else:
            pytest.fail("trial 0 never started")
        worker = int(lock.read_text())
        assert worker != process.pid
        os.kill(worker, signal.SIGKILL)
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err, err
    assert f"worker process {worker} was killed by SIGKILL; trial(s) [0] marked failed" in err, err
    rows = trial_rows(runs / "tune/k.db")
    assert rows[0] == (0, "FAIL")
    assert sorted(state for _, state in rows[1:]) == ["COMPLETE"] * 3, rows  # the study reached its 3 trials
    assert "study k: 4 trials" in out


def test_tune_prints_one_line_per_trial_unless_verbose(tmp_path, space, capsys):
    code, out = run_cli(capsys, "--trials", "2", "--space", str(space), "--runs-dir", str(tmp_path), "--study", "q")
    assert code == 0, out.err
    trial_lines = [line for line in out.out.splitlines() if re.match(r"trial \d+ ", line)]
    assert [line.split(":")[0] for line in trial_lines] == ["trial 0 complete", "trial 1 complete"]
    assert "learning_rate=" in trial_lines[0] and str(tmp_path / "tune/q/trial0000") in trial_lines[0]
    assert not [line for line in out.out.splitlines() if line.startswith(("step ", "eval at "))]
    assert "trial 0: {" not in out.err
    code, out = run_cli(
        capsys, "--trials", "3", "--space", str(space), "--runs-dir", str(tmp_path), "--study", "q", "-v"
    )
    assert code == 0, out.err
    assert "trial 2: {" in out.err and any(line.startswith("step ") for line in out.out.splitlines())
