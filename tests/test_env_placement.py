"""Where a run's envs step and where they come from: the user's own env module (``module:EnvId``,
``--gym-packages``) imported in every process that makes an env (this one, SB3's subprocess
workers, Ray runners, ``--resume``, ``evaluate``), never from a received file without the user's
word; ``--vec-env subproc`` with an env that raises in its worker; ``--runners`` from the command
line through a run's whole life (train, TensorBoard, resume, evaluate)."""

from __future__ import annotations

import itertools
import json
import shutil
import sys

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recurrent_rl.cli.main import main
from recurrent_rl.io import run_folder as runs
from tests.test_cli import TINY

# A user's own env, in a module of its own: registering it is what importing the module does. Each test
# writes it under a fresh name, so an id registered by one test cannot make another pass.
OWN_ENV = '''
import os
import gymnasium as gym

import recurrent_rl.envs  # noqa: F401  registers pomdp/


class OwnEnv(gym.Wrapper):
    """CartPole without velocities; with raise_at=N, raises on the N-th step of each env."""

    def __init__(self, raise_at=0):
        super().__init__(gym.make("pomdp/CartPoleNoVel-v1"))
        self.raise_at, self.steps = raise_at, 0

    def step(self, action):
        self.steps += 1
        if self.raise_at and self.steps == self.raise_at:
            raise RuntimeError(f"the simulator lost its connection (pid {os.getpid()})")
        return super().step(action)


gym.register("{env_id}", entry_point=OwnEnv, max_episode_steps=500)
'''

_names = itertools.count()


@pytest.fixture
def own_env(tmp_path, monkeypatch) -> tuple[str, str]:
    """(module, env id) of a fresh module on the Python path (this process's and its children's)."""
    module = f"own_env_{next(_names)}_{tmp_path.name.replace('-', '_')}"
    env_id = f"Own{next(_names)}-v0"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{module}.py").write_text(OWN_ENV.replace("{env_id}", env_id))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))  # processes that do not copy sys.path (Ray's workers)
    yield module, env_id
    sys.modules.pop(module, None)


def _cli(capsys, *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_without_its_module_the_users_env_is_unknown(own_env, tmp_path, capsys):
    module, env_id = own_env
    code, err = _cli(capsys, "train", "--env", env_id, "--runs-dir", tmp_path / "runs", *TINY)
    assert code == 2 and f"unknown env id '{env_id}'" in err and "--gym-packages my_pkg" in err
    assert module not in sys.modules and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("vec_env", ["dummy", "subproc"])
def test_a_module_colon_id_trains_resumes_and_evaluates(own_env, tmp_path, capsys, vec_env):
    module, env_id = own_env
    run = tmp_path / "runs" / "own"
    argv = ["train", "--env", f"{module}:{env_id}", "--vec-env", vec_env, "--runs-dir", run.parent, "--name", "own"]
    code, err = _cli(capsys, *argv, *TINY)
    assert code == 0, err
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    assert config["env"] == f"{module}:{env_id}" and config["vec_env"] == vec_env
    info = json.loads((run / runs.RUN_INFO).read_text())
    assert info["status"] == "finished" and info["trusted_modules"]["names"] == {"env": f"{module}:{env_id}"}

    # the user's own run: its signed record lets --resume and evaluate import the module again
    sys.modules.pop(module, None)
    code, err = _cli(capsys, "train", "--resume", run, "--timesteps", 320, "--no-progress")
    assert code == 0, err
    assert json.loads((run / runs.RUN_INFO).read_text())["num_timesteps"] >= 320
    report = tmp_path / "eval.json"
    code, err = _cli(capsys, "evaluate", run, "--episodes", 2, "--json", report, "--no-progress")
    assert code == 0, err
    assert json.loads(report.read_text())["episodes"] == 2


@pytest.mark.parametrize("vec_env", ["dummy", "subproc"])
def test_gym_packages_are_imported_for_a_bare_id_and_a_received_run_needs_the_users_word(
    own_env, tmp_path, capsys, vec_env
):
    module, env_id = own_env
    run = tmp_path / "runs" / "own"
    argv = ["train", "--env", env_id, "--gym-packages", module, "--vec-env", vec_env]
    argv += ["--runs-dir", run.parent, "--name", "own"]
    code, err = _cli(capsys, *argv, *TINY)
    assert code == 0, err
    assert yaml.safe_load((run / runs.CONFIG).read_text())["gym_packages"] == [module]
    sys.modules.pop(module, None)
    code, err = _cli(capsys, "evaluate", run, "--episodes", 1, "--no-progress")  # the user's own run: signed
    assert code == 0, err

    # the same folder from someone else: its record's signature is another key's, so nothing is imported
    received = tmp_path / "received"
    shutil.copytree(run, received)
    info = json.loads((received / runs.RUN_INFO).read_text())
    info["trusted_modules"]["signature"] = "0" * len(info["trusted_modules"]["signature"])
    (received / runs.RUN_INFO).write_text(json.dumps(info))
    sys.modules.pop(module, None)
    code, err = _cli(capsys, "evaluate", received, "--episodes", 1, "--no-progress")
    assert code == 2 and "is never imported" in err and f"--gym-packages '{module}'" in err
    assert module not in sys.modules
    # ... until the user names the module
    code, err = _cli(capsys, "evaluate", received, "--gym-packages", module, "--episodes", 1, "--no-progress")
    assert code == 0, err


def test_an_env_raising_in_a_subprocess_worker_ends_the_run_with_one_line(own_env, tmp_path, capsys):
    module, env_id = own_env
    run = tmp_path / "runs" / "raising"
    argv = ["train", "--env", f"{module}:{env_id}", "--vec-env", "subproc", "--runs-dir", run.parent]
    argv += ["--name", "raising", "--set", "env_kwargs.raise_at=40"]
    code, err = _cli(capsys, *argv, *TINY)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("recurrent-rl train: error: ")]
    assert len(lines) == 1 and "Traceback" not in err and "File " not in err, err
    line = lines[0]
    for part in (f"{module}:{env_id}", "raised RuntimeError in env worker", "the simulator lost its connection"):
        assert part in line, line
    assert f"recurrent-rl train --resume {run}" in line
    assert json.loads((run / runs.RUN_INFO).read_text())["status"].startswith("failed at step")


def test_an_env_that_cannot_be_made_in_its_worker_is_one_line_before_any_work(own_env, tmp_path, capsys):
    module, env_id = own_env
    argv = ["train", "--env", f"{module}:{env_id}", "--vec-env", "subproc", "--runs-dir", tmp_path / "runs"]
    code, err = _cli(capsys, *argv, "--set", "env_kwargs.speed=3", *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "speed" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_seeds_and_tune_workers_import_the_users_module(own_env, tmp_path, capsys):
    module, env_id = own_env
    runs_dir = tmp_path / "runs"
    own = ["--env", env_id, "--gym-packages", module]
    code, err = _cli(capsys, "train", *own, "--seeds", "0,1", "--workers", 2, "--runs-dir", runs_dir, *TINY)
    assert code == 0, err
    seeds = [json.loads(p.read_text())["status"] for p in runs_dir.rglob(runs.RUN_INFO)]
    assert seeds == ["finished", "finished"]
    tiny = ["n_timesteps=128", "n_envs=2", "n_steps=16", "batch_size=32", "eval.freq=0", "checkpoint.freq=0"]
    argv = ["tune", "--config", next(runs_dir.rglob(runs.CONFIG)), *(f"--set={s}" for s in tiny), "--trials", 1]
    code, err = _cli(capsys, *argv, "--gym-packages", module, "--runs-dir", tmp_path / "tune")
    assert code == 0, err


ray = pytest.importorskip("ray", reason="recurrent_rl[ray] (ray) is not installed")


@pytest.fixture
def fresh_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_runners_from_the_command_line_train_log_resume_and_evaluate(own_env, fresh_ray, tmp_path, capsys):
    module, env_id = own_env
    run = tmp_path / "runs" / "runners"
    argv = ["train", "--env", env_id, "--gym-packages", module, "--runners", 2, "--runner-envs", 1]
    code, err = _cli(capsys, *argv, "--runs-dir", run.parent, "--name", "runners", *TINY)
    assert code == 0, err
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    assert (config["runners"]["count"], config["runners"]["envs_per_runner"], config["n_envs"]) == (2, 1, 2)
    events = EventAccumulator(str(run / runs.TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"time/collect_s", "time/update_s", "runners/steps_per_s/0", "runners/steps_per_s/1"} <= tags, tags
    code, err = _cli(capsys, "train", "--resume", run, "--timesteps", 320, "--no-progress")
    assert code == 0, err
    info = json.loads((run / runs.RUN_INFO).read_text())
    assert info["status"] == "finished" and info["num_timesteps"] >= 320
    code, err = _cli(capsys, "evaluate", run, "--episodes", 1, "--no-progress")
    assert code == 0, err


def test_runners_without_ray_name_the_extra_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    code, err = _cli(capsys, "train", "--runners", 2, "--runs-dir", tmp_path / "runs", *TINY)
    assert code == 2 and "--runners needs Ray" in err and "pip install 'recurrent_rl[ray]'" in err
    assert not (tmp_path / "runs").exists()


def test_resume_keeps_the_runs_placement(tmp_path, capsys):
    code, err = _cli(capsys, "train", "--resume", tmp_path, "--runners", 2)
    assert code == 2 and "--runners" in err


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--runners", 3], "n_envs=8 envs do not split evenly over runners.count=3 runners"),
        (["--set", "runners.count=2", "--set", "runners.envs_per_runner=3"], "= 6 envs, but n_envs = 8"),
        (["--runners", 2, "--vec-env", "subproc"], "leave vec_env at dummy"),
        (["--runners", 2, "--address", "head-node"], "expected local, auto, HOST:PORT"),
        (["--runners", 2, "--address", "127.0.0.1:1"], "nothing answers there"),
        # --runners N --runner-envs K sets n_envs = N * K, checked as n_envs is
        (["--runners", 4096, "--runner-envs", 17], "config key 'n_envs': expected an integer in [1, 65536]"),
    ],
)
def test_placements_that_cannot_work_are_refused_before_any_work(settings, message, tmp_path, capsys):
    code, err = _cli(capsys, "train", *settings, "--runs-dir", tmp_path / "runs", "--no-progress")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_runner_count_and_envs_are_the_same_numbers_as_n_envs(capsys):
    """--runners N --runner-envs K is n_envs = N * K: the batch rules speak of n_envs as without runners."""
    from recurrent_rl.cli.common import resolve_train_config
    from recurrent_rl.cli.main import build_parser

    args = build_parser().parse_args(["train", "--runners", "4", "--runner-envs", "3"])
    config = resolve_train_config(args)
    assert (config.n_envs, config.runners.count, config.envs_per_runner) == (12, 4, 3)
    args = build_parser().parse_args(["train", "--runners", "4"])
    config = resolve_train_config(args)
    assert (config.n_envs, config.envs_per_runner) == (8, 2)
