"""What a new user meets in the first hour: a fast Python API, the learning signal while training,
a run that finishes with the --resume it was told to use, encoders that say what they chose, the
flags people type, help that shows the values used, pretraining output, and a quick start-up."""

import io
import json
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from recurrent_rl import RecurrentPPO, threads
from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset, preset_names
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import cli
from recurrent_rl.runs.callbacks import TrainingProgress
from recurrent_rl.runs.training import train

ROOT = Path(__file__).resolve().parents[1]
ENV = "pomdp/CartPoleNoVel-v1"
# a few hundred steps: 2 envs, rollouts of 16 steps (32 env steps), evaluations every few rollouts
TINY = [
    "--set",
    "n_envs=2",
    "--set",
    "n_steps=16",
    "--set",
    "batch_size=32",
    "--set",
    "eval.freq=128",
    "--set",
    "eval.episodes=2",
    "--set",
    "eval.final_episodes=2",
    "--set",
    "checkpoint.freq=64",
]


def run_cli(*args: object) -> int:
    return cli.main([str(a) for a in args])


def one_error_line(capsys, code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recurrent-rl ") and "Traceback" not in captured.err, captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- 1. the Python API trains on one thread by default ----------------------------------------


class RecordThreads(BaseCallback):
    def __init__(self, fail: bool = False):
        super().__init__()
        self.seen: set[int] = set()
        self.fail = fail

    def _on_step(self) -> bool:
        self.seen.add(th.get_num_threads())
        if self.fail:
            raise RuntimeError("a callback failed")
        return True


def tiny_model(**kwargs) -> RecurrentPPO:
    return RecurrentPPO(
        "MlpGruPolicy",
        ENV,
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"hidden_size": 8},
        device="cpu",
        **kwargs,
    )


@pytest.fixture
def torch_default_threads(monkeypatch):
    """torch at 2 threads, as if that were its own default (not set by the caller), no thread env vars."""
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    th.set_num_threads(2)
    monkeypatch.setattr(threads, "_THREADS_AT_IMPORT", 2)
    yield 2
    th.set_num_threads(1)


def test_learn_uses_one_thread_and_restores_the_count(torch_default_threads):
    model, record = tiny_model(), RecordThreads()
    model.learn(32, callback=record)
    assert record.seen == {1}
    assert th.get_num_threads() == torch_default_threads
    with pytest.raises(RuntimeError, match="a callback failed"):  # restored on the way out of an error too
        model.learn(32, callback=RecordThreads(fail=True))
    assert th.get_num_threads() == torch_default_threads


@pytest.mark.parametrize("how", ["keyword-none", "keyword-count", "env-var", "set-by-caller"])
def test_a_thread_count_the_user_chose_is_kept(how, torch_default_threads, monkeypatch):
    expected = torch_default_threads
    kwargs = {}
    if how == "keyword-none":
        kwargs["torch_threads"] = None
    elif how == "keyword-count":
        kwargs["torch_threads"] = expected = 3
    elif how == "env-var":
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
    else:
        th.set_num_threads(expected := 3)  # after RecurrentPPO was imported
    model, record = tiny_model(**kwargs), RecordThreads()
    model.learn(32, callback=record)
    assert record.seen == {expected}
    assert th.get_num_threads() == (3 if how == "set-by-caller" else torch_default_threads)


def test_torch_threads_is_checked_and_not_saved(tmp_path):
    with pytest.raises(ValueError, match="torch_threads must be 'auto', None or an integer >= 1, got 0"):
        tiny_model(torch_threads=0)
    tiny_model(torch_threads=2).save(tmp_path / "m.zip")
    assert RecurrentPPO.load(tmp_path / "m.zip").torch_threads == "auto"
    assert RecurrentPPO.load(tmp_path / "m.zip", torch_threads=2).torch_threads == 2
    assert threads.learn_threads("auto", "cuda") is None  # other devices: torch's count


# --- 2. the learning signal while training ----------------------------------------------------------


def test_without_a_terminal_training_prints_plain_lines(tmp_path):
    args = [
        sys.executable,
        "-m",
        "recurrent_rl",
        "train",
        "--runs-dir",
        str(tmp_path),
        "--name",
        "run",
        "--timesteps",
        "256",
        *TINY,
    ]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert 5 <= len(progress) <= 12, result.stdout  # about every 10% of the run, and the last step
    assert all("/256 (" in line and "steps/s" in line for line in progress)
    assert progress[-1].startswith("step 256/256 (100%)") and "mean return" in progress[-1]
    evaluations = [line for line in lines if line.startswith("eval at ")]
    assert evaluations[0].startswith("eval at 128 steps: return ") and "over 2 episodes" in evaluations[0]
    assert "\x1b[" not in result.stdout + result.stderr  # no bar, no terminal codes


def test_the_bar_shows_the_mean_return_and_the_success_rate():
    progress = TrainingProgress("bar", successes=deque([True, False, True, True]))
    progress.model = SimpleNamespace(ep_info_buffer=deque([{"r": 1.0}, {"r": 2.0}]))
    assert progress.signal() == "mean return 1.5  success 75%"
    progress.model, progress.successes = SimpleNamespace(ep_info_buffer=deque()), deque()
    assert progress.signal() == ""  # nothing to show before the first episode


def test_the_bar_is_drawn_with_the_signal_and_the_evaluations(tmp_path, monkeypatch):
    import recurrent_rl.runs.learning as learning

    stream = io.StringIO()
    monkeypatch.setenv("COLUMNS", "160")  # rich draws a file at 80 columns otherwise
    config = load_preset(
        "tmaze-gru",
        [
            "n_envs=2",
            "n_steps=16",
            "batch_size=32",
            "n_timesteps=128",
            "eval.freq=64",
            "eval.episodes=2",
            "eval.final_episodes=0",
        ],
    )

    class Bar(TrainingProgress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "stream": stream})

    monkeypatch.setattr(learning, "TrainingProgress", Bar)
    train(config, tmp_path, name="run", progress_bar=True)
    text = stream.getvalue()
    assert "128/128" in text and "mean return" in text and "success" in text
    assert "eval at 64 steps: return" in text


# --- 3. a run stopped in its last rollout finishes with the --resume it was told to use ------------


class SignalAt(BaseCallback):
    def __init__(self, step: int):
        super().__init__()
        self.step, self.sent = step, False

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return True


def test_a_run_stopped_in_its_last_rollout_finishes_on_resume(tmp_path, capsys):
    # rollouts of 2 envs x 16 steps end at 32, 64, 96 and 128: the last one passes the target of 100
    config = load_preset(
        DEFAULT_PRESET,
        [
            "n_envs=2",
            "n_steps=16",
            "batch_size=32",
            "n_timesteps=100",
            "eval.freq=64",
            "eval.episodes=2",
            "eval.final_episodes=2",
            "checkpoint.freq=32",
        ],
    )
    result = train(config, tmp_path, name="run", progress_bar=False, callbacks=[SignalAt(104)])
    run = result.run_dir
    assert result.interrupted == "SIGTERM" and result.num_timesteps >= 100  # past the target, not finished
    assert not (run / runs.MODEL).exists()
    capsys.readouterr()
    assert run_cli("train", "--resume", run, "--no-progress") == 0  # what the stop message says to run
    captured = capsys.readouterr()
    assert "finishing" in captured.err and "evaluation over 2 episodes" in captured.out
    info = json.loads((run / runs.RUN_INFO).read_text())
    assert info["status"] == "finished" and info["num_timesteps"] == result.num_timesteps
    assert RecurrentPPO.load(run / runs.MODEL).num_timesteps == result.num_timesteps  # nothing more trained
    assert json.loads((run / runs.EVAL_REPORT).read_text())["num_timesteps"] == result.num_timesteps
    assert "n_timesteps: 100" in (run / runs.CONFIG).read_text()  # the target stays

    # stopped after its last step but before the end (killed during the final evaluation): the same
    runs.update_run_info(run, status="running")
    (run / runs.MODEL).unlink()
    (run / runs.EVAL_REPORT).unlink()
    assert run_cli("train", "--resume", run, "--no-progress") == 0
    assert (run / runs.MODEL).is_file() and (run / runs.EVAL_REPORT).is_file()
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "finished"

    # a finished run asks for a larger total, as before
    capsys.readouterr()
    one_error_line(capsys, run_cli("train", "--resume", run), "already at", "finished", "--timesteps N")


# --- 4. an encoder says what it chose, and refuses a contradicting memory ---------------------------


def make_encoder(path: Path, memory: str = "lstm", hidden_size: int = 16, env_id: str | None = ENV) -> Path:
    from recurrent_rl.supervised.encoder import export_encoder
    from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig

    model = SequenceModel(SequenceModelConfig(input_size=4, output_size=2, memory=memory, hidden_size=hidden_size))
    return export_encoder(model, path, {"env_id": env_id} if env_id else None)


def test_an_encoder_says_which_memory_it_sets(tmp_path, capsys):
    encoder = make_encoder(tmp_path / "encoder.pt")
    assert run_cli("train", "--encoder", encoder, "--dry-run") == 0
    captured = capsys.readouterr()
    assert "memory: lstm" in captured.out and "hidden_size: 16" in captured.out
    assert (
        f"encoder {encoder} (pretrained on {ENV}): the policy's memory is the encoder's, a lstm of hidden_size 16 "
        "with 1 layer; it replaces the config's gru of hidden_size 64"
    ) in captured.err


@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ["--memory", "gru"],
            ["policy_kwargs.memory=gru (--memory gru) contradicts the encoder", "a lstm", "--set model.memory=gru"],
        ),
        (["--set", "policy_kwargs.hidden_size=32"], ["policy_kwargs.hidden_size=32 contradicts", "hidden_size 16"]),
    ],
)
def test_a_memory_that_contradicts_the_encoder_is_refused(args, fragments, tmp_path, capsys):
    encoder = make_encoder(tmp_path / "encoder.pt")
    code = run_cli("train", "--runs-dir", tmp_path / "runs", "--encoder", encoder, *args, "--timesteps", 64)
    one_error_line(capsys, code, *fragments)
    assert not (tmp_path / "runs").exists()


def test_an_encoder_from_another_env_is_used_with_a_warning(tmp_path, capsys):
    from recurrent_rl.supervised.encoder import EncoderEnvWarning, encoder_policy_kwargs, load_encoder

    encoder = make_encoder(tmp_path / "encoder.pt", env_id="pomdp/CartPoleNoVel-v1-elsewhere")
    model = RecurrentPPO(
        "MlpLstmPolicy",
        "pomdp/CartPoleNoVel-v1",
        n_steps=16,
        batch_size=16,
        policy_kwargs=encoder_policy_kwargs(encoder),
    )
    with pytest.warns(
        EncoderEnvWarning,
        match="recorded from pomdp/CartPoleNoVel-v1-elsewhere, but this model trains on pomdp/CartPoleNoVel-v1",
    ):
        load_encoder(model, encoder)
    # the command line: one warning line, and the run goes on
    args = [
        "train",
        "--runs-dir",
        tmp_path,
        "--name",
        "run",
        "--encoder",
        encoder,
        "--set",
        "normalize=false",
        "--timesteps",
        64,
        *TINY,
        "--no-progress",
    ]
    assert run_cli(*args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and warnings[0].startswith("recurrent-rl train: warning: the encoder")
    assert (tmp_path / "run" / runs.MODEL).is_file()


# --- 5. the flags people type -----------------------------------------------------------------------


def test_train_env_device_and_freeze_encoder_flags(tmp_path, capsys):
    encoder = make_encoder(tmp_path / "encoder.pt", env_id=None)
    assert run_cli("train", "--env", "pomdp/TMaze-v0", "--device", "cpu", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "env: pomdp/TMaze-v0" in out and "device: cpu" in out
    assert run_cli("train", "--encoder", encoder, "--freeze-encoder", "--dry-run") == 0
    assert "freeze: true" in capsys.readouterr().out
    one_error_line(capsys, run_cli("train", "--freeze-encoder", "--dry-run"), "--freeze-encoder", "--encoder PATH")
    one_error_line(capsys, run_cli("train", "--env", "pomdp/TMaze-L1O-v0", "--dry-run"), "unknown env id")


@pytest.mark.parametrize(
    "device, fragment",
    [("bogus", "unknown device 'bogus'"), ("cuda:99", "cuda:99"), ("cpu:x", "unknown device 'cpu:x'")],
)
def test_an_unknown_device_is_refused_before_anything_runs(device, fragment, tmp_path, capsys):
    code = run_cli("train", "--runs-dir", tmp_path / "runs", "--device", device, "--timesteps", 64)
    one_error_line(capsys, code, "device", fragment)
    assert not (tmp_path / "runs").exists()
    one_error_line(capsys, run_cli("train", "--set", f"device={device}", "--dry-run"), fragment)


def test_policy_dot_key_points_to_policy_kwargs(tmp_path, capsys):
    code = run_cli("train", "--set", "policy.memory=lstm", "--dry-run")
    one_error_line(capsys, code, "'policy' is the policy class name", "--set policy_kwargs.memory=lstm")
    code = run_cli("train", "--set", "policy.nope=1", "--dry-run")
    one_error_line(capsys, code, "policy_kwargs.<key>, one of: memory,")
    path = tmp_path / "config.yaml"
    path.write_text(f"env: {ENV}\npolicy: {{memory: lstm}}\n")
    one_error_line(capsys, run_cli("train", "--config", path, "--dry-run"), "options go under policy_kwargs")


def test_resume_refuses_the_new_flags(tmp_path, capsys):
    # --device is not refused: it says where the run goes on (tests/test_devices.py)
    code = run_cli("train", "--resume", tmp_path, "--env", ENV, "--device", "cpu", "--freeze-encoder")
    one_error_line(capsys, code, "--env, --freeze-encoder cannot change it")


# --- 6. train --help shows the values the default preset uses ---------------------------------------


def test_train_help_shows_the_default_presets_values(capsys):
    with pytest.raises(SystemExit):
        run_cli("train", "--help")
    out = capsys.readouterr().out
    preset = load_preset(DEFAULT_PRESET)
    assert preset.n_epochs != 10  # the schema's default: the help shows both
    assert f"n_epochs (an integer >= 1; default 10; default preset: {preset.n_epochs})" in out
    assert preset.n_steps == 128 and "n_steps (an integer >= 1; default 128):" in out  # the same: shown once
    assert f"default preset ({DEFAULT_PRESET})" in " ".join(out.split())
    assert f"default preset: {preset.n_timesteps})" in " ".join(out.split())  # next to --timesteps


# --- 7. pretraining: a bar or a few lines, the next command, its presets listed -------------------


def test_pretrain_prints_a_few_lines_and_the_next_command(tmp_path, capsys):
    args = [
        "pretrain",
        "--preset",
        "cartpole-novel",
        "--runs-dir",
        tmp_path,
        "--set",
        "data.n_steps=300",
        "--set",
        "train.epochs=40",
        "--set",
        "train.patience=100",
        "--set",
        "model.hidden_size=8",
        "--no-progress",
    ]
    assert run_cli(*args) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/40", *[f"{n}/40" for n in range(4, 41, 4)]]  # every 10%
    (run,) = tmp_path.iterdir()
    assert lines[-1].startswith(
        f"train an agent with it: recurrent-rl train --preset cartpole-novel-gru --encoder {run / runs.ENCODER}"
    )


def test_pretrain_progress_bar(tmp_path, capsys):
    args = [
        "pretrain",
        "--preset",
        "cartpole-novel",
        "--runs-dir",
        tmp_path,
        "--set",
        "data.n_steps=300",
        "--set",
        "train.epochs=3",
        "--set",
        "model.hidden_size=8",
        "--progress",
    ]
    assert run_cli(*args) == 0
    captured = capsys.readouterr()
    assert not [line for line in captured.out.splitlines() if line.startswith("epoch ")]
    assert "3/3" in captured.err and "train_loss" in captured.err


def test_presets_lists_the_pretraining_presets_marked(capsys):
    assert run_cli("presets") == 0
    lines = capsys.readouterr().out.splitlines()
    marked = [line.split()[1] for line in lines if line.startswith("pretrain ")]
    assert marked == preset_names("pretrain")
    assert any("recurrent-rl pretrain --preset NAME" in line for line in lines)


# --- 8. start-up imports no torch ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["presets"],
        ["presets", "--pretrain"],
        ["pretrain", "--help"],
        ["evaluate", "--help"],
        ["envs"],
        ["--version"],
    ],
)
def test_help_and_listings_import_no_torch(argv):
    code = f"""
import json, sys
from recurrent_rl.__main__ import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "stable_baselines3", "tensorboard"))
print(json.dumps(heavy), file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
