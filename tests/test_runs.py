"""Run folders: unique names, atomic writes and checkpoints, interrupt and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
from stable_baselines3.common.callbacks import BaseCallback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recurrent_rl import RecurrentPPO
from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import checkpoints, cli
from recurrent_rl.runs.training import train

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "n_envs=2",
    "n_steps=16",
    "batch_size=32",
    "n_timesteps=256",
    "eval.freq=128",
    "eval.episodes=2",
    "eval.final_episodes=2",
    "checkpoint.freq=64",
]


def tb_steps(run_dir: Path, tag: str = "time/fps") -> list[int]:
    events = EventAccumulator(str(run_dir / runs.TENSORBOARD))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


# --- names and atomic writes ----------------------------------------------------------------------


def test_run_names_are_readable_and_unique(tmp_path):
    name = runs.run_name("pomdp/CartPoleNoVel-v1", "gru", 3, when=0)
    assert name.startswith("pomdp-CartPoleNoVel-v1__gru__seed3__")
    first = runs.create_run_dir(tmp_path, name, unique=True)
    second = runs.create_run_dir(tmp_path, name, unique=True)
    assert first != second and second.name == name + "-2"
    with pytest.raises(runs.RunError, match="already exists"):
        runs.create_run_dir(tmp_path, name, unique=False)
    with pytest.raises(runs.RunError, match="plain folder name"):
        runs.check_run_name("../escape")


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "report.json"
    runs.atomic_write_json(path, {"version": 1})
    with pytest.raises(RuntimeError):
        with runs.atomic_open(path) as file:
            file.write('{"version": 2, "trunc')
            raise RuntimeError("crash in the middle of a write")
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_a_failed_checkpoint_leaves_the_previous_ones(tmp_path):
    def good(folder: Path) -> None:
        (folder / runs.MODEL).write_bytes(b"model")

    def crash(folder: Path) -> None:
        (folder / runs.MODEL).write_bytes(b"half a mo")
        raise OSError("disk full")

    runs.write_checkpoint(tmp_path, 64, good)
    with pytest.raises(OSError):
        runs.write_checkpoint(tmp_path, 128, crash)
    assert [step for step, _ in runs.checkpoint_dirs(tmp_path)] == [64]
    assert runs.latest_checkpoint(tmp_path).name == "step_0000000064"
    assert not [p for p in (tmp_path / runs.CHECKPOINTS).iterdir() if p.name.startswith(".")]
    for step in (128, 192, 256):
        runs.write_checkpoint(tmp_path, step, good, keep=2)
    assert [step for step, _ in runs.checkpoint_dirs(tmp_path)] == [192, 256]


def test_model_saves_are_atomic(tmp_path):
    model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16)
    checkpoints.save_model(model, tmp_path / "model.zip")
    before = (tmp_path / "model.zip").read_bytes()

    class Broken:
        def save(self, file):
            file.write(b"PK partial")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_model(Broken(), tmp_path / "model.zip")
    assert (tmp_path / "model.zip").read_bytes() == before
    RecurrentPPO.load(tmp_path / "model.zip")


def test_a_model_checkpoint_holds_the_model_and_its_step(tmp_path):
    from recurrent_rl.runs import training

    model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16)
    model.num_timesteps = 48
    path = checkpoints.write_model_checkpoint(tmp_path, model, keep=1)
    assert path == runs.latest_checkpoint(tmp_path) and path.name == "step_0000000048"
    assert json.loads((path / runs.CHECKPOINT_STATE).read_text())["num_timesteps"] == 48
    assert runs.read_run_info(tmp_path)["last_checkpoint"] == str(path.relative_to(tmp_path))
    RecurrentPPO.load(path / runs.MODEL)
    model.num_timesteps = 64
    with pytest.warns(DeprecationWarning, match="write_model_checkpoint"):  # the name it had in training.py
        assert training.write_checkpoint(tmp_path, model, keep=1).name == "step_0000000064"
    assert [step for step, _ in runs.checkpoint_dirs(tmp_path)] == [64]


# --- interrupt and resume -------------------------------------------------------------------------


class SignalAt(BaseCallback):
    """Send a real signal to this process once training reaches ``step``."""

    def __init__(self, step: int, signum: int):
        super().__init__()
        self.step, self.signum, self.sent = step, signum, False

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return True


def test_sigterm_writes_a_loadable_checkpoint_and_resume_continues(tmp_path, capsys):
    config = load_preset(DEFAULT_PRESET, TINY)
    previous_handler = signal.getsignal(signal.SIGTERM)
    result = train(config, tmp_path, name="run", progress_bar=False, callbacks=[SignalAt(100, signal.SIGTERM)])
    assert signal.getsignal(signal.SIGTERM) is previous_handler  # handlers restored
    run = result.run_dir
    assert result.interrupted == "SIGTERM" and 100 <= result.num_timesteps < 256
    assert result.checkpoint == runs.latest_checkpoint(run)
    model = RecurrentPPO.load(result.checkpoint / runs.MODEL)
    assert model.num_timesteps == result.num_timesteps
    assert (result.checkpoint / runs.VECNORMALIZE).is_file()
    assert not (run / runs.MODEL).exists()  # not finished
    assert "interrupted" in json.loads((run / runs.RUN_INFO).read_text())["status"]
    stopped_at = result.num_timesteps

    # an interrupted run can be evaluated: its latest checkpoint stands in for model.zip
    assert cli.main(["evaluate", str(run), "--episodes", "2", "--json", str(tmp_path / "e.json")]) == 0

    # resume: the same step counter, the same TensorBoard folder, up to the configured total
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    steps = tb_steps(run)
    assert steps == sorted(steps) and max(steps) >= 256 and any(s > stopped_at for s in steps)
    assert len(list((run / runs.TENSORBOARD).glob("events.out.tfevents.*"))) >= 2  # one file per segment, one run
    final = RecurrentPPO.load(run / runs.MODEL)
    assert final.num_timesteps >= 256 and final.num_timesteps - stopped_at < 256  # continued, not restarted
    info = json.loads((run / runs.RUN_INFO).read_text())
    assert info["status"] == "finished" and info["resumes"][0]["from_step"] == stopped_at

    # a finished run needs a larger total to go on; then config.yaml records it
    assert cli.main(["train", "--resume", str(run)]) == 2
    assert "already at" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run), "--timesteps", "320", "--no-progress"]) == 0
    assert RecurrentPPO.load(run / runs.MODEL).num_timesteps >= 320
    assert "n_timesteps: 320" in (run / runs.CONFIG).read_text()


def test_resume_without_a_checkpoint_says_what_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.CONFIG).write_text("env: pomdp/CartPoleNoVel-v1\n")
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "--config" in err
    assert cli.main(["train", "--resume", str(tmp_path / "nowhere")]) == 2


def test_sigterm_on_the_command_line(tmp_path):
    """A real process stopped by SIGTERM exits 143 with a loadable checkpoint and a resume hint."""
    args = [
        sys.executable,
        "-m",
        "recurrent_rl",
        "train",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "run",
        "--no-progress",
        *[x for item in TINY for x in ("--set", item)],
        "--timesteps",
        "1000000",
    ]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # polls 0.2 s apart: a run that never checkpoints fails here, not by hanging
            if runs.latest_checkpoint(tmp_path / "run") is not None:  # training has started and checkpointed
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint after 600 polls")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, err
    assert "Traceback" not in err and "recurrent-rl train --resume" in err
    checkpoint = runs.latest_checkpoint(tmp_path / "run")
    RecurrentPPO.load(checkpoint / runs.MODEL)


class NanReward(gym.Env):
    """Rewards become nan after a few steps: the loss does too."""

    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t > 40 else 0.0
        return self.observation_space.sample(), reward, False, self.t >= 50, {}


def test_a_non_finite_loss_keeps_the_last_good_model(tmp_path, capsys):
    if "test/NanReward-v0" not in gym.registry:
        gym.register("test/NanReward-v0", entry_point=NanReward)
    args = [
        "train",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "nan",
        "--set",
        "env=test/NanReward-v0",
        "--set",
        "normalize=false",
        *[x for item in TINY for x in ("--set", item)],
        "--no-progress",
    ]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "nan or inf" in err and "Traceback" not in err
    run = tmp_path / "nan"
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "failed: non-finite loss"
    model = RecurrentPPO.load(runs.latest_checkpoint(run) / runs.MODEL)
    assert all(p.isfinite().all() for p in model.policy.parameters())


def test_a_run_being_trained_cannot_be_resumed_twice(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.CONFIG).write_text("env: pomdp/CartPoleNoVel-v1\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (run / runs.LOCK).write_text(f"{sleeper.pid}\n")
        with pytest.raises(runs.RunError, match=f"being trained by process {sleeper.pid}"):
            with runs.run_lock(run):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with runs.run_lock(run):  # the lock of a process that is gone is taken over
        assert (run / runs.LOCK).read_text().strip() == str(os.getpid())
    assert not (run / runs.LOCK).exists()


def _enter_lock(run: str, barrier, holders, most) -> None:
    barrier.wait()
    try:
        with runs.run_lock(run):
            with holders.get_lock():
                holders.value += 1
                most.value = max(most.value, holders.value)
            time.sleep(0.02)
            with holders.get_lock():
                holders.value -= 1
    except runs.RunError:
        pass


def test_two_processes_entering_the_lock_at_once_never_both_hold_it(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    most = ctx.Value("i", 0)
    for attempt in range(40):  # a fresh run each time: the lock file is created by the racers
        run = tmp_path / f"run{attempt}"
        run.mkdir()
        barrier, holders = ctx.Barrier(2), ctx.Value("i", 0)
        racers = [ctx.Process(target=_enter_lock, args=(str(run), barrier, holders, most)) for _ in range(2)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
            assert racer.exitcode == 0
    assert most.value == 1


def test_parameters_already_non_finite_are_never_saved_as_the_last_good_model(tmp_path, capsys):
    # a learning rate near float32's maximum: the first Adam step writes inf into the parameters
    # (its gradients were finite), and the next loss is nan
    args = [
        "train",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "inf",
        "--timesteps",
        "2048",
        "--set",
        "n_envs=2",
        "--set",
        "n_steps=16",
        "--set",
        "batch_size=32",
        "--set",
        "learning_rate=3e38",
        "--set",
        "checkpoint.freq=64",
        "--set",
        "eval.freq=100000",
        "--no-progress",
    ]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "The last good model is none: no checkpoint was written before it" in err and "Traceback" not in err
    run = tmp_path / "inf"
    assert runs.latest_checkpoint(run) is None  # the periodic checkpoints refused the inf parameters
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "failed: non-finite loss"


def test_a_stale_lock_marks_a_run_left_running_as_killed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.CONFIG).write_text("env: pomdp/CartPoleNoVel-v1\n")
    runs.update_run_info(run, status="running")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run / runs.LOCK).write_text(f"{gone.pid}\n")  # the lock of a trainer that was SIGKILLed
    with runs.run_lock(run):
        assert runs.read_run_info(run)["status"] == f"killed (process {gone.pid} ended without closing the run)"
    runs.update_run_info(run, status="finished")
    with runs.run_lock(run):  # no stale lock: the status is left alone
        assert runs.read_run_info(run)["status"] == "finished"


def test_a_signal_before_the_final_evaluation_leaves_the_run_interrupted_not_finished(tmp_path, monkeypatch, capsys):
    import signal

    from recurrent_rl.runs.callbacks import PeriodicEvaluation

    evaluate = PeriodicEvaluation.evaluate

    def evaluate_then_ctrl_c(self):  # the last periodic evaluation, in _finish: Ctrl-C arrives there
        report = evaluate(self)
        if self.num_timesteps >= 256:
            os.kill(os.getpid(), signal.SIGINT)
        return report

    monkeypatch.setattr(PeriodicEvaluation, "evaluate", evaluate_then_ctrl_c)
    args = [
        "train",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "r",
        "--timesteps",
        "256",
        "--set",
        "n_envs=2",
        "--set",
        "n_steps=16",
        "--set",
        "batch_size=32",
        "--set",
        "eval.freq=100000",
        "--set",
        "eval.episodes=2",
        "--set",
        "eval.final_episodes=2",
        "--no-progress",
    ]
    assert cli.main(args) == 130
    out, err = capsys.readouterr()
    run = tmp_path / "r"
    assert not (run / runs.EVAL_REPORT).exists() and str(run / runs.EVAL_REPORT) not in out + err
    assert json.loads((run / runs.RUN_INFO).read_text())["status"].startswith("interrupted (")
    monkeypatch.undo()
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0  # finishing it just works
    assert (run / runs.EVAL_REPORT).is_file()
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "finished"


def test_normalized_rewards_with_raw_observations_train_checkpoint_resume_evaluate_and_export(tmp_path, capsys):
    """``normalize: {enabled: true, norm_obs: false}`` (what the docs advise with --encoder): SB3's
    VecNormalize keeps no observation statistics then, and every checkpoint crashed on them."""
    from recurrent_rl.export.play import play_episodes
    from recurrent_rl.export.safe import load_safe, read_safe_vecnormalize
    from recurrent_rl.runs.evaluation import evaluate, load_agent
    from recurrent_rl.runs.training import resume

    config = load_preset(
        DEFAULT_PRESET, [*TINY, "n_timesteps=128", "normalize.enabled=true", "normalize.norm_obs=false"]
    )
    first = train(config, tmp_path, "raw-obs", progress_bar=False)
    run = first.run_dir
    assert [step for step, _ in runs.checkpoint_dirs(run)] == [64, 128]
    stats = read_safe_vecnormalize(runs.latest_checkpoint(run) / runs.MODEL)
    assert stats["norm_obs"] is False and stats["norm_reward"] is True and stats["obs_rms"] is None
    assert stats["ret_rms"]["count"] > 1  # the reward statistics are kept and resumed
    result = resume(run, timesteps=256, progress_bar=False)
    assert result.num_timesteps == 256 and runs.read_run_info(run)["status"] == "finished"
    agent = load_agent(run)
    assert agent.normalizer is not None and not agent.normalizer.norm_obs
    report = evaluate(agent, episodes=3, seed=7, progress=False)
    # ONNX: the graph normalises nothing and acts as the model does: the same episodes, the same returns
    assert cli.main(["export", str(run), "--out", str(tmp_path / "policy.onnx")]) == 0
    returns, _ = play_episodes(tmp_path / "policy.onnx", config.env, episodes=3, seed=7)
    assert returns == pytest.approx(report.returns)
    assert cli.main(["export", str(run), "--format", "safe", "--out", str(tmp_path / "copy")]) == 0
    load_safe(tmp_path / "copy.json")
    assert read_safe_vecnormalize(tmp_path / "copy.json")["obs_rms"] is None
    capsys.readouterr()
