"""Configs and run folders from strangers are data: no module they name is imported, no path they
name leads out of their folder, no YAML they hold is expanded past its budget, and no value they
hold is echoed whole.

A crafted file gets one ``error:`` line (exit code 2) and no traceback; a marker file that the
named module would write on import never appears. What the user types (``--set``, ``--env``,
``--encoder``) stays theirs.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recurrent_rl.io import run_folder as runs, trust
from recurrent_rl.received import MAX_YAML_NODES
from recurrent_rl.runs import cli
from tests.test_cli import tiny_run  # noqa: F401  tiny_run: a finished run, trained once for this module

ROOT = Path(__file__).resolve().parents[1]
LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else 'lol'] * 10)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi")
)  # 9 levels of 10 aliases: 10**9 values from 400 bytes
PRETRAIN = ["--preset", "cartpole-novel", "--set", "data.n_steps=300", "--set", "train.epochs=1"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, argv, *fragments) -> str:
    """Run ``argv``: exit code 2 and one error line holding every fragment, no traceback."""
    code, out, err = run_cli(capsys, *argv)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert code == 2 and len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """A module on sys.path that writes a marker file when imported: (module name, marker path)."""
    marker = tmp_path / "the-module-ran"
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "evil_received_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef act(obs):\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "evil_received_module", raising=False)
    yield "evil_received_module", marker
    sys.modules.pop("evil_received_module", None)


@pytest.fixture
def trust_key(tmp_path, monkeypatch):
    path = tmp_path / "trust.key"
    monkeypatch.setenv(trust.KEY_ENV, str(path))
    return path


def crafted_run(tiny_run: Path, folder: Path, **changes) -> Path:  # noqa: F811
    """A copy of the tiny run whose config.yaml has ``changes`` laid over it."""
    run = folder / "crafted"
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / runs.CONFIG).read_text())
    config.update(changes)
    (run / runs.CONFIG).write_text(yaml.safe_dump(config))
    return run


# --- YAML bombs and long values --------------------------------------------------------------------


def test_a_billion_laughs_config_in_a_run_folder_fails_at_once_in_one_line(tiny_run, tmp_path):  # noqa: F811
    """Before: evaluate grew about 70 MB/s until MemoryError. Now: refused before the YAML is built,
    in a process whose address space is capped so that a regression fails rather than swaps."""
    run = tmp_path / "bomb"
    shutil.copytree(tiny_run, run)
    (run / runs.CONFIG).write_text(LAUGHS)
    limit = 3 << 30  # evaluate runs in 2 GB of address space (torch included); the bomb wants hundreds

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run(  # a regression that hangs instead of refusing fails by the timeout
        [sys.executable, "-m", "recurrent_rl", "evaluate", str(run), "--episodes", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert f"the YAML expands to more than {MAX_YAML_NODES:,} values" in line and len(line) < 400


@pytest.mark.parametrize("command", [["train", "--config"], ["tune", "--config"], ["pretrain", "--config"]])
def test_a_billion_laughs_config_file_is_refused_by_every_command(command, tmp_path, capsys):
    if command[0] == "tune":
        pytest.importorskip("optuna")
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    refused(capsys, [*command, path], "the YAML expands to more than")
    space = tmp_path / "space.yaml"
    space.write_text(LAUGHS.replace("i: &i", "learning_rate: &i"))
    if command[0] == "tune":
        refused(capsys, ["tune", "--space", space], "the YAML expands to more than")


def test_values_echoed_from_a_file_are_cut(tmp_path, capsys):
    """Before: one value repeated by aliases printed a 312 MB error line."""
    long = "x" * 1_000_000
    cases = {
        "string.yaml": {"env": "pomdp/CartPoleNoVel-v1", "policy": long},
        "key.yaml": {"env": "pomdp/CartPoleNoVel-v1", long: 1},
        "number.yaml": {"env": "pomdp/CartPoleNoVel-v1", "n_steps": -int("9" * 4000)},
        "env.yaml": {"env": long},
    }
    for name, values in cases.items():
        (tmp_path / name).write_text(yaml.safe_dump(values))
    # aliases: 100 uses of a 1 MB string, within the node budget, as a value no key takes
    (tmp_path / "aliases.yaml").write_text(
        f"env: pomdp/CartPoleNoVel-v1\nseed: &s '{long}'\nn_steps: [{', '.join(['*s'] * 100)}]\n"
    )
    (tmp_path / "digits.yaml").write_text(f"env: pomdp/CartPoleNoVel-v1\nn_steps: {'9' * 5000}\n")
    for name in [*cases, "aliases.yaml", "digits.yaml"]:
        line = refused(capsys, ["train", "--config", tmp_path / name])
        assert len(line) < 800, (name, len(line))


@pytest.mark.parametrize(
    "text, fragment",
    [("[" * 100_000 + "]" * 100_000, "the JSON cannot be read"), ("[" * 100 + "]" * 100, "nest too deep")],
    ids=["past-the-stack", "deeper-than-yaml"],
)
def test_deep_json_configs_are_one_line(text, fragment, tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text('{"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": ' + text + "}")
    refused(capsys, ["train", "--config", path], fragment)


# --- env ids and callables named in files ------------------------------------------------------------


def test_an_env_id_naming_a_module_in_a_run_folder_is_never_imported(tiny_run, tmp_path, evil_module, capsys):  # noqa: F811
    module, marker = evil_module
    run = crafted_run(tiny_run, tmp_path, env=f"{module}:Evil-v0")
    for argv in (
        ["evaluate", run],
        ["train", "--resume", run, "--timesteps", 512],
        ["train", "--config", run / runs.CONFIG],
    ):
        refused(capsys, argv, f"module '{module}' Gymnasium would import", "is never imported", "--env")
    # export records an env id in the graph for the runner: never this one
    code, out, err = run_cli(capsys, "export", run, "--out", tmp_path / "policy.onnx")
    assert "Traceback" not in err
    if code == 0:
        import onnx

        metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "policy.onnx")).metadata_props}
        assert module not in json.dumps(metadata)
    assert not marker.exists() and module not in sys.modules
    # the user's own --env replaces the file's id (and is checked as any id the user types)
    code, out, err = run_cli(capsys, "evaluate", run, "--env", "pomdp/CartPoleNoVel-v1", "--episodes", 1)
    assert code == 0, err
    assert not marker.exists()
    # the user's own --env module:Id is the user's word: Gymnasium's form imports the module (its Evil-v0
    # is not registered by it, so the id is then unknown)
    refused(capsys, ["train", "--config", run / runs.CONFIG, "--env", f"{module}:Evil-v0", "--dry-run"], "unknown env")
    assert marker.exists()


def test_a_module_named_by_a_pretraining_config_file_is_never_imported(tmp_path, evil_module, trust_key, capsys):
    module, marker = evil_module
    config = tmp_path / "received" / "pretrain.yaml"
    config.parent.mkdir()
    config.write_text(f"data: {{env_id: pomdp/CartPoleNoVel-v1, policy: '{module}:act'}}\n")
    refused(
        capsys,
        ["pretrain", "--config", config, "--runs-dir", tmp_path / "runs"],
        f"'{module}:act', a function of the module '{module}', which Python would import",
        f"--set data.policy={module}:act",
    )
    # a forged record in a run.json beside it: signed with another key, or not at all
    forged = trust.record(config.parent, {"data.policy": f"{module}:act"})
    trust_key.write_bytes(b"k" * 32)  # this user's key is another one than the one that signed it
    runs.atomic_write_json(config.parent / runs.RUN_INFO, {"trusted_modules": forged})
    refused(capsys, ["pretrain", "--config", config, "--runs-dir", tmp_path / "runs"], "is never imported")
    runs.atomic_write_json(
        config.parent / runs.RUN_INFO, {"trusted_modules": {"names": {"data.policy": f"{module}:act"}}}
    )
    refused(capsys, ["pretrain", "--config", config, "--runs-dir", tmp_path / "runs"], "is never imported")
    assert not marker.exists() and module not in sys.modules and not (tmp_path / "runs").exists()


def test_a_module_the_user_typed_is_recorded_and_their_own_rerun_imports_it_again(
    tmp_path, evil_module, trust_key, capsys
):
    module, marker = evil_module
    code, out, err = run_cli(
        capsys, "pretrain", *PRETRAIN, "--set", f"data.policy={module}:act", "--runs-dir", tmp_path / "runs"
    )
    assert code == 0, err
    assert marker.exists()  # the user typed it: imported
    (run,) = (tmp_path / "runs").iterdir()
    record = runs.read_run_info(run)[trust.FIELD]
    assert record["names"] == {"data.policy": f"{module}:act"} and record["signature"].startswith("hmac-sha256:")
    assert trust.trusted_names(run) == {"data.policy": f"{module}:act"}
    assert f"--set data.policy={module}:act" in (run / runs.CONFIG).read_text()  # the rerun command names it
    # their own rerun from the run's config.yaml: imported again, and said so
    code, out, err = run_cli(capsys, "pretrain", "--config", run / runs.CONFIG, "--runs-dir", tmp_path / "again")
    assert code == 0, err
    assert f"note: data.policy '{module}:act' imports the module '{module}': your own command named it" in err
    # the same folder elsewhere (received from someone), or its record edited: refused
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    refused(capsys, ["pretrain", "--config", moved / runs.CONFIG, "--runs-dir", tmp_path / "x"], "is never imported")
    info = runs.read_run_info(run)
    info[trust.FIELD]["names"]["data.policy"] = "os:system"
    runs.atomic_write_json(run / runs.RUN_INFO, info)
    (run / runs.CONFIG).write_text((run / runs.CONFIG).read_text().replace(f"{module}:act", "os:system"))
    refused(capsys, ["pretrain", "--config", run / runs.CONFIG, "--runs-dir", tmp_path / "x"], "'os'")
    assert not (tmp_path / "x").exists()


# --- paths named in files -----------------------------------------------------------------------------


@pytest.fixture
def encoder(tmp_path) -> Path:
    from recurrent_rl.supervised.encoder import export_encoder
    from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig

    path = tmp_path / "elsewhere" / "encoder.pt"
    export_encoder(SequenceModel(SequenceModelConfig(input_size=4, output_size=2, hidden_size=8)), path)
    return path


def test_an_encoder_path_in_a_config_file_stays_inside_its_folder(encoder, tmp_path, capsys):
    folder = tmp_path / "configs"
    (folder / "sub").mkdir(parents=True)

    def config(path: str) -> Path:
        file = folder / "config.yaml"
        file.write_text(f"env: pomdp/CartPoleNoVel-v1\nencoder: {{path: {json.dumps(path)}}}\n")
        return file

    rule = "read relative to the file's folder and must stay inside it"
    for named, fragment in (
        ("../elsewhere/encoder.pt", "leads outside its folder"),
        ("sub/../../elsewhere/encoder.pt", "leads outside its folder"),
        (str(encoder), "names the absolute path"),
    ):
        refused(
            capsys, ["train", "--config", config(named), "--runs-dir", tmp_path / "runs"], fragment, rule, "--encoder"
        )
    (folder / "sub" / "link.pt").symlink_to(encoder)
    refused(capsys, ["train", "--config", config("sub/link.pt"), "--runs-dir", tmp_path / "runs"], "outside its folder")
    assert not (tmp_path / "runs").exists()
    # the user's own config naming an encoder beside it: read relative to the file, whatever the cwd
    shutil.copy(encoder, folder / "sub" / "mine.pt")
    code, out, err = run_cli(capsys, "train", "--config", config("sub/mine.pt"), "--dry-run")
    assert code == 0 and f"path: {(folder / 'sub' / 'mine.pt').resolve()}" in out, err
    # on the command line the user names any encoder they like
    for flag in (["--encoder", encoder], ["--set", f"encoder.path={encoder}"]):
        code, out, err = run_cli(capsys, "train", "--config", config("../elsewhere/encoder.pt"), *flag, "--dry-run")
        assert code == 0 and f"path: {encoder}" in out, err


def test_a_model_path_in_a_pretraining_config_file_stays_inside_its_folder(tmp_path, capsys):
    config = tmp_path / "configs" / "pretrain.yaml"
    config.parent.mkdir()
    for named, fragment in (("../agent.zip", "leads outside its folder"), ("/tmp/agent.zip", "absolute path")):
        config.write_text(f"data: {{env_id: pomdp/CartPoleNoVel-v1, policy: {named}}}\n")
        refused(capsys, ["pretrain", "--config", config], fragment, "--set data.policy=PATH")
    config.write_text("data: {env_id: pomdp/CartPoleNoVel-v1, policy: models/agent.zip}\n")
    code, out, err = run_cli(capsys, "pretrain", "--config", config, "--dry-run")
    assert code == 0 and f"policy: {config.parent.resolve() / 'models/agent.zip'}" in out, err
    code, out, err = run_cli(capsys, "pretrain", "--config", config, "--set", "data.policy=/tmp/agent.zip", "--dry-run")
    assert code == 0 and "policy: /tmp/agent.zip" in out, err


# --- values the configs now check -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0", "1.5", "true", "'10'"])
def test_max_episode_steps_must_be_a_positive_integer(value, capsys):
    refused(
        capsys,
        ["train", "--set", f"env_kwargs.max_episode_steps={value}", "--dry-run"],
        "config key 'env_kwargs.max_episode_steps': expected a positive integer",
    )


def test_max_episode_steps_sets_the_time_limit(capsys):
    from recurrent_rl.config.presets import load_preset
    from recurrent_rl.runs.training import make_training_env

    config = load_preset("cartpole-novel-gru", ["env_kwargs.max_episode_steps=5"])
    env = make_training_env(config, 0)
    env.reset()
    lengths = []
    for step in range(1, 20):
        _, _, dones, infos = env.step([0] * config.n_envs)
        if dones[0]:
            lengths.append(step)
            break
    env.close()
    assert lengths == [5]  # truncated by the limit (always pushing left, the pole falls later)


@pytest.mark.parametrize(
    "state, fragment",
    [
        ('{"num_timesteps": 100000000000000000000}', "not a step count"),
        ('{"num_timesteps": true}', "not a step count"),
        ('{"num_timesteps": "256"}', "not a step count"),
        ("[" * 100_000, "has no readable state.json"),
        ('{"num_timesteps": ' + "9" * 5000 + "}", "has no readable state.json"),
        (" " * (1 << 17), "is 131,072 bytes"),
    ],
    ids=["huge", "bool", "text", "deep", "digits", "large"],
)
def test_a_crafted_checkpoint_state_is_one_line(state, fragment, tiny_run, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (runs.latest_checkpoint(run) / runs.CHECKPOINT_STATE).write_text(state)
    before = (run / runs.RUN_INFO).read_bytes()
    line = refused(capsys, ["train", "--resume", run, "--timesteps", 512], fragment)
    assert len(line) < 600
    assert (run / runs.RUN_INFO).read_bytes() == before
