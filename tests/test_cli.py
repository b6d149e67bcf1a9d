"""The command line: a tiny train + evaluate, --help everywhere, listings, and bad input."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recurrent_rl.config.presets import DEFAULT_PRESET
from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import cli
from recurrent_rl.runs.callbacks import ALWAYS_TAGS

ROOT = Path(__file__).resolve().parents[1]
# a few hundred steps: 2 envs, rollouts of 16 steps, evaluations and checkpoints every few rollouts
TINY = [
    "--timesteps",
    "256",
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
    "eval.final_episodes=3",
    "--set",
    "checkpoint.freq=64",
    "--set",
    "checkpoint.keep=2",
    "--no-progress",
]


def run_cli(*args: str) -> int:
    return cli.main([str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    runs_dir = tmp_path_factory.mktemp("runs")
    assert run_cli("train", "--runs-dir", runs_dir, "--name", "tiny", *TINY) == 0
    return runs_dir / "tiny"


def test_train_writes_the_run_folder(tiny_run, capsys):
    for name in (runs.CONFIG, runs.MODEL, runs.BEST_MODEL, runs.VECNORMALIZE, runs.EVAL_REPORT, runs.RUN_INFO):
        assert (tiny_run / name).is_file(), name
    steps = [step for step, _ in runs.checkpoint_dirs(tiny_run)]
    assert steps[-1] == 256 and len(steps) == 2  # keep=2: the oldest were pruned
    assert not [p for p in tiny_run.rglob(".*")], "temporary files left behind"
    assert json.loads((tiny_run / runs.RUN_INFO).read_text())["status"] == "finished"
    report = json.loads((tiny_run / runs.EVAL_REPORT).read_text())
    assert report["episodes"] == 3 and report["num_timesteps"] == 256

    events = EventAccumulator(str(tiny_run / runs.TENSORBOARD))
    events.Reload()
    missing = set(ALWAYS_TAGS) - set(events.Tags()["scalars"])
    assert not missing, f"documented tags missing from the event files: {sorted(missing)}"
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")


def test_evaluate_writes_the_json_report(tiny_run, tmp_path, capsys):
    before = snapshot(tiny_run)
    out = tmp_path / "out" / "report.json"
    assert run_cli("evaluate", tiny_run, "--episodes", 4, "--seed", 5, "--json", out, "--no-progress") == 0
    report = json.loads(out.read_text())
    for key in (
        "mean_return",
        "std_return",
        "median_return",
        "min_return",
        "max_return",
        "success_rate",
        "episode_lengths",
        "episode_returns",
        "mean_length",
    ):
        assert key in report
    assert report["episodes"] == 4 and report["seed"] == 5 and report["deterministic"] is True
    assert report["success_rate"] is None  # CartPole reports no success
    table = capsys.readouterr().out
    assert "mean" in table and "return" in table and str(out) in table
    # same seed, same episodes; and evaluating changes nothing in the run folder
    again = tmp_path / "again.json"
    assert run_cli("evaluate", tiny_run / runs.MODEL, "--episodes", 4, "--seed", 5, "--json", again) == 0
    assert json.loads(again.read_text())["episode_returns"] == report["episode_returns"]
    assert snapshot(tiny_run) == before


def test_evaluate_draws_a_gif_and_a_plot(tiny_run, tmp_path):
    gif, png = tmp_path / "episode.gif", tmp_path / "plot.png"
    assert run_cli("evaluate", tiny_run, "--episodes", 3, "--stochastic", "--video", gif, "--plot", png) == 0
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import imageio.v3 as iio

    frames = iio.imread(gif, index=None)
    assert frames.ndim == 4 and len(frames) > 5


def test_evaluate_a_checkpoint_and_the_best_model(tiny_run, tmp_path):
    checkpoint = runs.latest_checkpoint(tiny_run) / runs.MODEL
    assert run_cli("evaluate", checkpoint, "--episodes", 2, "--json", tmp_path / "c.json") == 0
    assert run_cli("evaluate", tiny_run, "--best", "--episodes", 2, "--json", tmp_path / "b.json") == 0


# --- help and listings --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["presets"], ["envs"], ["pretrain"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*command, "--help")
    assert exit_info.value.code == 0
    assert "usage: recurrent-rl" in capsys.readouterr().out


def test_python_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "recurrent_rl", "train", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert (
        result.returncode == 0 and "--resume RUN_DIR" in result.stdout and "policy_kwargs.hidden_size" in result.stdout
    )


def test_presets_lists_one_line_each_and_marks_the_default(capsys):
    from recurrent_rl.config.presets import preset_names

    assert run_cli("presets") == 0
    lines = capsys.readouterr().out.splitlines()
    default = [line for line in lines if DEFAULT_PRESET in line]
    assert default and default[0].startswith("*")
    train_rows = [line for line in lines if "pomdp/" in line and not line.startswith("pretrain")]
    assert [line[1:].split()[0] for line in train_rows] == preset_names()


def test_envs_lists_every_pomdp_env_one_line_each(capsys):
    assert run_cli("envs") == 0
    lines = capsys.readouterr().out.splitlines()
    suite = sorted(k for k in gym.registry if k.startswith("pomdp/"))
    assert [line.split()[0] for line in lines] == suite
    assert all("obs " in line and "actions " in line for line in lines)


def test_no_arguments_trains_the_default_preset(monkeypatch, tmp_path):
    import recurrent_rl.runs.training as training

    seen = {}

    def fake_train(config, runs_dir, name, **kwargs):
        seen.update(config=config, runs_dir=runs_dir, name=name)
        raise SystemExit(0)

    monkeypatch.setattr(training, "train", fake_train)
    with pytest.raises(SystemExit):
        run_cli()
    from recurrent_rl.config.presets import load_preset

    assert seen["config"] == load_preset(DEFAULT_PRESET) and seen["runs_dir"] == "runs" and seen["name"] is None


def test_dry_run_prints_the_resolved_config(capsys):
    assert run_cli("train", "--preset", "tmaze-l10-gru", "--set", "n_envs=4", "--seed", 7, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "env: pomdp/TMaze-L10-v0" in out and "n_envs: 4" in out and "seed: 7" in out


# --- bad input: one clear message, exit 2, no traceback, nothing changed on disk --------------


def assert_clean_error(capsys, code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recurrent-rl "), captured.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--set", "env=pomdp/CartPoleNoVell-v1"], ["unknown env id", "Did you mean 'pomdp/CartPoleNoVel-v1'"]),
        (["--preset", "tmaze-gr"], ["unknown preset 'tmaze-gr'", "tmaze-gru"]),
        (["--set", "policy_kwargs.hiden_size=8"], ["policy_kwargs.hiden_size", "hidden_size"]),
        (["--set", "n_epochs=ten"], ["n_epochs", "expected an integer"]),
        (["--set", "n_steps"], ["--set expects KEY=VALUE"]),
        (["--set", "env_kwargs.no_such_arg=1"], ["env_kwargs", "no_such_arg"]),
    ],
)
def test_bad_train_input(args, fragments, tmp_path, capsys):
    code = run_cli("train", "--runs-dir", tmp_path / "runs", *args, "--timesteps", 64)
    assert_clean_error(capsys, code, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "bad input left a run folder"


def test_malformed_yaml_says_where(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("env: pomdp/CartPoleNoVel-v1\nn_steps: [32\n")
    assert_clean_error(capsys, run_cli("train", "--config", path, "--runs-dir", tmp_path), "malformed YAML at line 3")


def test_an_existing_run_folder_is_never_touched(tiny_run, capsys):
    before = snapshot(tiny_run)
    code = run_cli("train", "--runs-dir", tiny_run.parent, "--name", "tiny", *TINY)
    assert_clean_error(capsys, code, "already exists", "--resume")
    assert snapshot(tiny_run) == before


def test_resume_rejects_config_changes(tiny_run, capsys):
    assert_clean_error(capsys, run_cli("train", "--resume", tiny_run, "--set", "n_steps=8"), "--set cannot change it")


@pytest.mark.parametrize("kind", ["missing", "corrupt", "not-a-zip-model", "folder"])
def test_bad_model_files(kind, tmp_path, capsys):
    path = tmp_path / "model.zip"
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 this is not really a zip")
    elif kind == "not-a-zip-model":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data", "{}")
    elif kind == "folder":
        path = tmp_path
    before = snapshot(tmp_path)
    code = run_cli(
        "evaluate", path, "--env", "pomdp/CartPoleNoVel-v1", "--json", tmp_path / "r.json", "--trust-pickle"
    )  # past the refusal of a pickle without a safe copy: the file itself
    message = assert_clean_error(capsys, code)
    assert {
        "missing": "does not exist",
        "corrupt": "cannot load",
        "not-a-zip-model": "cannot load",
        "folder": "not a run folder",
    }[kind] in message
    assert snapshot(tmp_path) == before


def test_model_on_an_env_with_other_spaces(tiny_run, tmp_path, capsys):
    code = run_cli("evaluate", tiny_run / runs.MODEL, "--env", "pomdp/TMaze-L10-v0", "--json", tmp_path / "r.json")
    assert_clean_error(capsys, code, "trained on observations", "pomdp/TMaze-L10-v0")
    assert not (tmp_path / "r.json").exists()


def test_bad_output_paths_fail_before_running(tiny_run, tmp_path, capsys):
    assert_clean_error(capsys, run_cli("evaluate", tiny_run, "--video", tmp_path / "v.avi"), ".gif or .mp4")
    assert_clean_error(capsys, run_cli("evaluate", tiny_run, "--plot", tmp_path / "p.jpg"), ".png")
    assert_clean_error(capsys, run_cli("evaluate", tiny_run, "--episodes", 0), "at least 1")


class NoFrames(gym.Env):
    """An env that cannot draw itself."""

    observation_space = gym.spaces.Box(-1, 1, (3,))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


def test_env_without_frames_cannot_record_video(tmp_path, capsys):
    from recurrent_rl import RecurrentPPO

    if "test/NoFrames-v0" not in gym.registry:
        gym.register("test/NoFrames-v0", entry_point=NoFrames)
    RecurrentPPO("MlpGruPolicy", NoFrames(), n_steps=16, batch_size=16).save(tmp_path / "m.zip")
    before = snapshot(tmp_path)
    code = run_cli(
        "evaluate", tmp_path / "m.zip", "--env", "test/NoFrames-v0", "--episodes", 2, "--video", tmp_path / "v.gif"
    )
    assert_clean_error(capsys, code, "frame")
    assert snapshot(tmp_path) == before


def test_train_with_a_frozen_pretrained_encoder(tmp_path, capsys):
    import torch as th

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.supervised.encoder import export_encoder
    from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig

    sequence_model = SequenceModel(SequenceModelConfig(input_size=4, output_size=2, memory="lstm", hidden_size=16))
    export_encoder(sequence_model, tmp_path / "pretrained" / "encoder.pt")
    args = [
        "train",
        "--runs-dir",
        tmp_path,
        "--name",
        "enc",
        "--encoder",
        tmp_path / "pretrained" / "encoder.pt",
        "--set",
        "encoder.freeze=true",
        "--set",
        "normalize=false",
        *TINY,
    ]
    assert run_cli(*args) == 0
    run = tmp_path / "enc"
    assert (run / runs.ENCODER).read_bytes() == (tmp_path / "pretrained" / "encoder.pt").read_bytes()
    text = (run / runs.CONFIG).read_text()
    assert "path: encoder.pt" in text and "memory: lstm" in text and "hidden_size: 16" in text
    model = RecurrentPPO.load(run / runs.MODEL)
    for name, value in sequence_model.core.rnn.state_dict().items():  # frozen: bit-identical after learn()
        assert th.equal(model.policy.actor_memory.rnn.state_dict()[name], value), name
    # the run's config.yaml alone reproduces it: its encoder is the copy next to it
    assert run_cli("train", "--config", run / runs.CONFIG, "--dry-run") == 0
    assert f"path: {run / runs.ENCODER}" in capsys.readouterr().out
    # a missing encoder is bad input like any other
    code = run_cli("train", "--runs-dir", tmp_path, "--encoder", tmp_path / "nope.pt", *TINY)
    assert_clean_error(capsys, code, "encoder")


# --- recurrent-rl pretrain ----------------------------------------------------------------------


def test_presets_lists_the_pretraining_presets_too(capsys):
    from recurrent_rl.config.presets import preset_names

    assert run_cli("presets", "--pretrain") == 0
    lines = capsys.readouterr().out.splitlines()
    names = preset_names("pretrain")
    assert [line.split()[0] for line in lines[: len(names)]] == names
    assert all("pomdp/" in line and "steps" in line for line in lines[: len(names)])
    # the plain listing has them too, each marked as a pretraining preset
    assert run_cli("presets") == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain ")]
    assert [row[1] for row in rows] == names


def test_pretrain_dry_run_prints_the_resolved_config(capsys):
    import yaml

    assert run_cli("pretrain", "--preset", "pendulum-novel", "--set", "model.memory=lstm", "--dry-run") == 0
    values = yaml.safe_load(capsys.readouterr().out)
    assert values["model"]["memory"] == "lstm" and values["data"]["env_id"] == "pomdp/PendulumNoVel-v1"
    assert values["train"]["batch_size"] == 4 and values["train"]["normalize_inputs"] is True  # every key, resolved


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--preset", "cartpole"], "unknown pretraining preset 'cartpole'. Did you mean 'cartpole-novel'"),
        (["--preset", "cartpole-novel", "--set", "train.epoch=3"], "unknown config key(s) ['train.epoch']"),
        (["--preset", "cartpole-novel", "--set", "train.epochs"], "--set expects KEY=VALUE (e.g. train.epochs=20)"),
        (["--config", "nope.yaml"], "config file nope.yaml does not exist"),
        (["--set", "model.memory=gru"], "config key 'data': missing required key"),
        ([], "nothing to pretrain"),
        (["--preset", "cartpole-novel", "--set", "data.policy=nope.zip"], "the policy file nope.zip does not exist"),
        (["--preset", "cartpole-novel", "--set", "data.policy=math:pi"], "'math:pi' is not a function"),
        (["--preset", "cartpole-novel", "--set", "data.n_steps=5"], "leaves an empty split"),
        (
            ["--preset", "cartpole-novel", "--set", "data.n_steps=50", "--set", "data.target_indices=[9]"],
            "target_indices [9] do not exist",
        ),
    ],
)
def test_pretrain_bad_input_is_one_line_and_writes_nothing(args, fragment, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    assert_clean_error(capsys, run_cli("pretrain", "--runs-dir", runs_dir, *args), fragment)
    assert not runs_dir.exists()


def test_pretrain_config_files_of_every_format_and_malformed_ones(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[model]\nmemory = "lstm"\n')
    (tmp_path / "c.json").write_text('{"model": {"memory": "rnn"}}')
    (tmp_path / "c.yaml").write_text("model: {memory: lstm\n")
    for suffix, memory in (("toml", "lstm"), ("json", "rnn")):
        assert run_cli("pretrain", "--preset", "cartpole-novel", "--config", tmp_path / f"c.{suffix}", "--dry-run") == 0
        assert f"memory: {memory}" in capsys.readouterr().out
    code = run_cli("pretrain", "--preset", "cartpole-novel", "--config", tmp_path / "c.yaml")
    assert_clean_error(capsys, code, "malformed YAML at line 2", str(tmp_path / "c.yaml"))


def test_pretrain_then_train_with_its_encoder(tmp_path, capsys):
    assert (
        run_cli(
            "pretrain",
            "--preset",
            "cartpole-novel",
            "--runs-dir",
            tmp_path / "pre",
            "--set",
            "data.n_steps=300",
            "--set",
            "train.epochs=1",
            "--set",
            "model.hidden_size=8",
        )
        == 0
    )
    (run,) = (tmp_path / "pre").iterdir()
    assert (run / runs.CONFIG).is_file() and (run / runs.ENCODER).is_file() and (run / runs.SEQUENCE_MODEL).is_file()
    capsys.readouterr()
    # a pretraining run is no agent: evaluating or resuming it says what to do instead
    assert_clean_error(capsys, run_cli("evaluate", run), "is a pretraining run", f"--encoder {run / runs.ENCODER}")
    assert_clean_error(capsys, run_cli("train", "--resume", run), "is a pretraining run")
    assert run_cli("train", "--runs-dir", tmp_path, "--name", "agent", "--encoder", run / runs.ENCODER, *TINY) == 0
    assert "hidden_size: 8" in (tmp_path / "agent" / runs.CONFIG).read_text()


def test_evaluate_output_paths_that_cannot_be_written_fail_before_any_episode(tiny_run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for args, fragment in (
        (
            ("--json", tmp_path),
            f"--json {tmp_path} is a folder: give a file name, e.g. --json {tmp_path / 'eval.json'}",
        ),
        (("--plot", blocker / "plot.png"), "cannot write there"),  # its folder is a file
        (("--json", blocker / "eval.json"), "cannot write there"),
    ):
        assert run_cli("evaluate", tiny_run, "--episodes", "1", "--no-progress", *args) == 2
        out, err = capsys.readouterr()
        assert fragment in err and "Traceback" not in err and "mean" not in out, err  # no episode ran


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("policy=CnnGruPolicy", "CNN policies (NatureCNN) need image observations"),
        ("policy=MultiInputGruPolicy", "multi-input policies (CombinedExtractor) need Dict observations"),
        ("policy_kwargs.hidden_size=100000000", "the model does not fit in memory"),
    ],
)
def test_configs_that_validate_but_cannot_build_the_model_leave_no_run_folder(override, fragment, tmp_path, capsys):
    args = ["train", "--runs-dir", tmp_path, "--name", "x", "--set", override, *TINY]
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_resume_removes_what_interrupted_writes_left(tiny_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(tiny_run, tmp_path / "copy"))
    leftovers = [
        run / ".model.zip.k2j3_x.tmp.zip",
        run / "checkpoints" / ".step_0000000064.a1b2.tmp",
        run / "checkpoints" / ".step_0000000128.old-4242",
    ]
    leftovers[0].write_bytes(b"half a zip")
    for folder in leftovers[1:]:
        folder.mkdir()
        (folder / "model.zip").write_bytes(b"half")
    assert run_cli("train", "--resume", run, "--timesteps", "320", "--no-progress") == 0
    assert not any(p.exists() for p in leftovers)
    assert (run / "model.zip").is_file() and (run / ".lock").exists() is False
