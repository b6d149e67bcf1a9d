"""Bad input, one table: each row of BAD_INPUTS is a command line that must be refused with exit
code 2 and one ``error:`` line saying what is wrong and how to fix it, without a traceback, and
without writing or changing anything on disk.

Each row runs in-process (``recurrent_rl.cli.main.main``) in a scratch folder that is the current
folder and holds the files of FILES and, where the row names them, copies of the run folders of
RUN_FOLDERS; the folder must be byte for byte the same afterwards.

docs/bad-inputs.md (a development page; the command line's page, docs/cli.md, summarises the
kinds of bad input for users) shows the same table with the message each row gets. Rebuild it
after changing the rows (it runs every row and trains one tiny run, about a minute):

    python -m tests.test_bad_inputs --write      # rewrite the table in docs/bad-inputs.md
    python -m tests.test_bad_inputs --markdown   # print it
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from recurrent_rl.runs import cli
from tests.test_cli import TINY, tiny_run  # noqa: F401  tiny_run: the finished run, trained once for this module

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
TABLE_START, TABLE_END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
LONGEST_MESSAGE = 160  # longer messages are cut with "..." in the docs


class Bad(NamedTuple):
    id: str
    argv: list[str]
    fragment: str  # in the error line
    needs: str | None = None  # an optional package the input gets to ("ray"); tune always needs optuna


# the files in the scratch folder of every row
FILES: dict[str, str | bytes] = {
    "notes.txt": "",
    "garbage.pt": "not a torch file\n",
    "malformed.yaml": "env: pomdp/CartPoleNoVel-v1\nn_steps: [32\n",
    "tabs.yaml": "env: pomdp/CartPoleNoVel-v1\npolicy_kwargs:\n\thidden_size: 8\n",
    "list.yaml": "- env: pomdp/CartPoleNoVel-v1\n",
    "empty.yaml": "",
    "typo.yaml": "{env: pomdp/CartPoleNoVel-v1, n_step: 32}\n",
    "wrong-type.yaml": "{env: pomdp/CartPoleNoVel-v1, n_epochs: ten}\n",
    "latin1.yaml": "env: pomdp/CartPoleNoVel-v1\ndescription: caf\u00e9\n".encode("latin-1"),
    "zoo.yaml": "pomdp/CartPoleNoVel-v1: {n_steps: 32}\npomdp/TMaze-L50-v0: {n_steps: 64}\n",
    "zoo-code.yaml": "CartPoleNoVel-v1:\n  policy_kwargs: \"dict(net_arch=__import__('os').listdir('.'))\"\n",
    "policy-mapping.yaml": "{env: pomdp/CartPoleNoVel-v1, policy: {memory: lstm}}\n",
    "old-env.yaml": "{env: pomdp/CartPoleNoVel-v0}\n",
    "pretrain.toml": "[model]\nmemory = lstm\n",
    "pretrain.json": '{"model": {"memory": "lstm",}}\n',
    "corrupt.zip": b"PK\x03\x04 this is not really a zip",
    "policy.json": "{}\n",
    "space-malformed.yaml": "learning_rate: {low: 1e-4\n",
    "space-list.yaml": "- learning_rate\n",
    "space-typo.yaml": "learning_rat: [0.001, 0.0003]\n",
    "space-batch.yaml": "batch_size: [32, 64]\n",
    "space-reversed.yaml": "gamma: {low: 0.999, high: 0.9}\n",
    "space-log-zero.yaml": "ent_coef: {low: 0.0, high: 0.1, log: true}\n",
    "space-step.yaml": "n_epochs: {low: 3, high: 20, step: 0}\n",
    "space-n-steps-range.yaml": "n_steps: {low: 16, high: 256}\n",
    "space-no-choices.yaml": "hidden_size: []\n",
    "space-no-divide.yaml": "n_steps: [30]\nminibatches: [7]\n",
    "space-text.yaml": "n_epochs: {low: three, high: 10}\n",
    "space-range-keys.yaml": "gamma: {min: 0.9, max: 0.999}\n",
    # files from strangers: a YAML bomb, a module to import, paths that leave the folder
    "laughs.yaml": "".join(
        f"{n}: &{n} [{', '.join([f'*{p}' if p else 'x'] * 10)}]\n" for p, n in zip(["", *"abcde"], "abcdef")
    ),
    "env-module.yaml": "{env: 'evil_module:Evil-v0'}\n",
    "encoder-outside.yaml": "{env: pomdp/CartPoleNoVel-v1, encoder: {path: ../elsewhere/encoder.pt}}\n",
    "encoder-absolute.yaml": "{env: pomdp/CartPoleNoVel-v1, encoder: {path: /tmp/encoder.pt}}\n",
    "pretrain-module.yaml": "data: {env_id: pomdp/CartPoleNoVel-v1, policy: 'os:system'}\n",
    "pretrain-outside.yaml": "data: {env_id: pomdp/CartPoleNoVel-v1, policy: ../agent.zip}\n",
    "deep.json": '{"env": "pomdp/CartPoleNoVel-v1", "policy_kwargs": ' + "[" * 100 + "]" * 100 + "}\n",
    "space-laughs.yaml": "".join(
        f"{n}: &{n} [{', '.join([f'*{p}' if p else '0.1'] * 10)}]\n" for p, n in zip(["", *"abcde"], "abcdef")
    ),
    "space-infinite.yaml": "ent_coef: {low: 0.0, high: .inf}\n",
}


def _without_best(run: Path) -> None:
    for path in run.glob("best_*"):
        path.unlink()


def _empty(run: Path) -> None:  # created, then killed before its first checkpoint
    for path in run.iterdir():
        if path.name not in ("config.yaml", "run.json"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _locked(run: Path) -> None:  # pid 1 is alive: another process is training the run
    (run / ".lock").write_text("1\n")


def _bomb(run: Path) -> None:  # a config.yaml of a few hundred bytes that expands to a million values
    (run / "config.yaml").write_text(FILES["laughs.yaml"])  # type: ignore[arg-type]


def _env_module(run: Path) -> None:  # a config.yaml whose env id makes Gymnasium import a module
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("env: pomdp/CartPoleNoVel-v1", "env: evil_module:Evil-v0"))


# run folders a row may name (copies of the tiny finished run, some broken on purpose)
RUN_FOLDERS: dict[str, Callable[[Path], None] | None] = {
    "run": None,
    "run-nobest": _without_best,
    "run-empty": _empty,
    "run-locked": _locked,
    "run-bomb": _bomb,
    "run-env-module": _env_module,
}

CARTPOLE = "pomdp/CartPoleNoVel-v1"
SEEDS = ["train", "--seeds", "0-1"]
RESUME = ["train", "--resume"]
PRETRAIN = ["pretrain", "--preset", "cartpole-novel"]

BAD_INPUTS: list[Bad] = [
    # --- train: where the config comes from -------------------------------------------------
    Bad("preset-typo", ["train", "--preset", "tmaze-gr"], "Did you mean 'tmaze-gru'"),
    Bad("preset-and-config", ["train", "--preset", "tmaze-gru", "--config", "my.yaml"], "not allowed with argument"),
    Bad("config-missing", ["train", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    Bad("config-folder", ["train", "--config", "."], "is a folder: give the file"),
    Bad("config-malformed", ["train", "--config", "malformed.yaml"], "malformed YAML at line 3, column 1"),
    Bad("config-tabs", ["train", "--config", "tabs.yaml"], "malformed YAML at line 3"),
    Bad("config-not-utf8", ["train", "--config", "latin1.yaml"], "is not UTF-8 text"),
    Bad("config-list", ["train", "--config", "list.yaml"], "expected a mapping of config keys"),
    Bad("config-empty", ["train", "--config", "empty.yaml"], "env is required"),
    Bad("config-unknown-key", ["train", "--config", "typo.yaml"], "unknown config key(s) ['n_step']"),
    Bad("config-wrong-type", ["train", "--config", "wrong-type.yaml"], "expected an integer >= 1, got 'ten'"),
    Bad("config-zoo-many-envs", ["train", "--config", "zoo.yaml"], "pick one with --env ID"),
    Bad("config-zoo-no-section", ["train", "--config", "zoo.yaml", "--env", "Acrobot-v1"], "no section for env"),
    Bad("config-zoo-python-call", ["train", "--config", "zoo-code.yaml"], "a config file is data, never run"),
    Bad("config-policy-mapping", ["train", "--config", "policy-mapping.yaml"], "go under policy_kwargs"),
    Bad("config-unknown-env", ["train", "--config", "old-env.yaml"], "Did you mean 'pomdp/CartPoleNoVel-v1'"),
    Bad("config-yaml-bomb", ["train", "--config", "laughs.yaml"], "the YAML expands to more than 100,000 values"),
    Bad("config-deep-json", ["train", "--config", "deep.json"], "nest too deep"),
    Bad("config-env-module", ["train", "--config", "env-module.yaml"], "a module named in a file is never imported"),
    Bad("config-encoder-outside", ["train", "--config", "encoder-outside.yaml"], "leads outside its folder"),
    Bad("config-encoder-absolute", ["train", "--config", "encoder-absolute.yaml"], "names the absolute path"),
    # --- train: --set -----------------------------------------------------------------------
    Bad("set-no-equals", ["train", "--set", "n_steps"], "--set expects KEY=VALUE"),
    Bad("set-no-key", ["train", "--set", "=64"], "--set expects KEY=VALUE"),
    Bad("set-unknown-key", ["train", "--set", "policy_kwargs.hiden_size=8"], "hidden_size"),
    Bad("set-policy-dot", ["train", "--set", "policy.hidden_size=8"], "--set policy_kwargs.hidden_size=8"),
    Bad("set-under-a-value", ["train", "--set", "n_steps.x=1"], "'n_steps' is not a section"),
    Bad("set-section-to-value", ["train", "--set", "policy_kwargs=5"], "expected a mapping"),
    Bad("set-malformed-value", ["train", "--set", "policy_kwargs.net_arch=[64"], "as YAML at column 4"),
    Bad("set-wrong-type", ["train", "--set", "n_epochs=ten"], "expected an integer >= 1, got 'ten'"),
    Bad("set-negative", ["train", "--set", "n_steps=-5"], "expected an integer >= 1, got -5"),
    Bad("set-out-of-range", ["train", "--set", "gamma=1.5"], "expected a number in [0, 1], got 1.5"),
    Bad("set-bad-choice", ["train", "--set", "policy_kwargs.activation_fn=swish"], "expected one of 'tanh'"),
    Bad("set-unknown-policy", ["train", "--set", "policy=MlpGRUPolicy"], "'MlpGruPolicy'"),
    Bad("set-bad-schedule", ["train", "--set", "learning_rate=lin_fast"], "lin_<number > 0>"),
    Bad("set-layer-size", ["train", "--set", "policy_kwargs.net_arch=[0]"], "layer sizes must be positive"),
    Bad("set-chunk-not-dividing", ["train", "--set", "sequence_length=5"], "does not divide n_steps"),
    Bad("set-burn-in-too-long", ["train", "--set", "burn_in=129"], "burn_in must be an integer from 0 to n_steps=128"),
    Bad("set-burn-in-gradient-alone", ["train", "--set", "burn_in_gradient=true"], "needs burn_in > 0"),
    Bad("set-env-kwargs", ["train", "--set", "env_kwargs.no_such_arg=1"], "no_such_arg"),
    Bad("set-memory-kwargs", ["train", "--set", "policy_kwargs.memory_kwargs.window=8"], "takes no memory_kwargs"),
    Bad("set-sde-discrete", ["train", "--set", "use_sde=true"], "continuous actions"),
    Bad("set-cnn-policy", ["train", "--set", "policy=CnnGruPolicy"], "need image observations"),
    Bad("set-huge-model", ["train", "--set", "policy_kwargs.hidden_size=100000000"], "does not fit in memory"),
    Bad("set-no-time-limit", ["train", "--set", "env_kwargs.max_episode_steps=-1"], "expected a positive integer"),
    # --- train: the algorithm (algo, --algo) -------------------------------------------------
    Bad("algo-unknown", ["train", "--algo", "td3"], "invalid choice: 'td3'"),
    Bad("algo-sac-on-ppo-preset", ["train", "--algo", "sac", "--preset", "tmaze-gru"], "are RecurrentPPO's"),
    Bad("algo-ppo-key-for-sac", ["train", "--algo", "sac", "--set", "n_epochs=3"], "n_epochs is RecurrentPPO's"),
    Bad("algo-sac-key-for-ppo", ["train", "--set", "buffer_size=1000"], "buffer_size is RecurrentSAC's"),
    Bad("algo-sac-burn-in", ["train", "--algo", "sac", "--set", "burn_in=24"], "must be smaller than sequence_length"),
    Bad("algo-sac-short-buffer", ["train", "--algo", "sac", "--set", "buffer_size=20"], "does not fit the replay"),
    Bad("algo-sac-ent-coef", ["train", "--algo", "sac", "--set", "ent_coef=auto_x"], "auto_<number > 0>"),
    Bad("algo-ppo-ent-coef-auto", ["train", "--set", "ent_coef=auto"], "auto tunes the coefficient of algo sac only"),
    Bad("algo-sac-discrete", ["train", "--algo", "sac", "--env", "pomdp/CartPoleNoVel-v1"], "continuous (Box) action"),
    Bad("algo-maskable-no-masks", ["train", "--algo", "maskable"], "has no action_masks() method"),
    Bad("algo-sac-resume", [*RESUME, "run", "--algo", "sac"], "--algo cannot change it"),
    # --- train: the other options -----------------------------------------------------------
    Bad("env-typo", ["train", "--env", "pomdp/CartPoleNoVell-v1"], "Did you mean 'pomdp/CartPoleNoVel-v1'"),
    Bad("timesteps-zero", ["train", "--timesteps", "0"], "n_timesteps"),
    Bad("timesteps-not-integer", ["train", "--timesteps", "1e5"], "invalid int value: '1e5'"),
    Bad("seed-negative", ["train", "--seed", "-1"], "config key 'seed': expected an integer in [0, 2147483647]"),
    Bad("seed-too-large", ["train", "--seed", "4294967296"], "expected an integer in [0, 2147483647], got 4294967296"),
    Bad("memory-unknown", ["train", "--memory", "gpt"], "invalid choice: 'gpt'"),
    Bad("device-unknown", ["train", "--device", "tpu"], "unknown device 'tpu'"),
    Bad("device-absent", ["train", "--device", "cuda:99"], "device 'cuda:99'"),
    Bad("encoder-missing", ["train", "--encoder", "nope.pt"], "cannot read the encoder"),
    Bad("encoder-not-torch", ["train", "--encoder", "garbage.pt"], "is not a recurrent_rl model or encoder file"),
    Bad("encoder-a-folder", ["train", "--encoder", "."], "is a folder: give the file"),
    Bad("freeze-without-encoder", ["train", "--freeze-encoder"], "there is no encoder to freeze"),
    Bad("trust-pickle-without-resume", ["train", "--trust-pickle"], "goes with --resume RUN_DIR"),
    Bad("name-with-slash", ["train", "--name", "exp/1"], "is not a plain folder name"),
    Bad("name-dot-dot", ["train", "--name", ".."], "is not a plain folder name"),
    Bad("name-taken", ["train", "--runs-dir", ".", "--name", "run"], "already exists"),
    Bad("runs-dir-is-a-file", ["train", "--runs-dir", "notes.txt"], "is a file, not a folder"),
    Bad("runs-dir-under-a-file", ["train", "--runs-dir", "notes.txt/runs"], "a file, not a folder"),
    Bad("unknown-option", ["train", "--steps", "64"], "unrecognized argument --steps; did you mean --timesteps?"),
    # --- where the envs step, and the user's own env modules ---------------------------------
    Bad("vec-env-unknown", ["train", "--vec-env", "ray"], "invalid choice: 'ray'"),
    Bad("runners-uneven", ["train", "--runners", "3"], "do not split evenly over runners.count=3"),
    Bad("runners-negative", ["train", "--runners", "-1"], "expected an integer in [0, 4096]"),
    Bad("runner-envs-without-runners", ["train", "--runner-envs", "2"], "goes with --runners N"),
    Bad("runners-with-subproc", ["train", "--runners", "2", "--vec-env", "subproc"], "leave vec_env at dummy"),
    Bad("runners-address-no-port", ["train", "--runners", "2", "--address", "head-node"], "HOST:PORT"),
    Bad("runners-unreachable", ["train", "--runners", "2", "--address", "127.0.0.1:1"], "nothing answers there", "ray"),
    Bad("gym-packages-missing", ["train", "--gym-packages", "no_such_env_pkg"], "cannot import 'no_such_env_pkg'"),
    Bad("gym-packages-not-a-name", ["train", "--gym-packages", "my pkg"], "expected a module name"),
    Bad("env-module-missing", ["train", "--env", "no_such_env_pkg:Env-v0"], "cannot import 'no_such_env_pkg'"),
    # --- train --resume ---------------------------------------------------------------------
    Bad("resume-missing", [*RESUME, "runs/nope"], "no such run folder"),
    Bad("resume-not-a-run", [*RESUME, "."], "not a run folder"),
    Bad("resume-with-set", [*RESUME, "run", "--set", "n_steps=8"], "--set cannot change it"),
    Bad("resume-finished", [*RESUME, "run", "--timesteps", "100"], "already at 256 steps"),
    Bad("resume-no-checkpoint", [*RESUME, "run-empty", "--timesteps", "512"], "has no checkpoint"),
    Bad("resume-locked", [*RESUME, "run-locked", "--timesteps", "512"], "is being trained by process 1"),
    Bad("resume-yaml-bomb", [*RESUME, "run-bomb", "--timesteps", "512"], "the YAML expands to more than"),
    Bad("resume-env-module", [*RESUME, "run-env-module", "--timesteps", "512"], "is never imported"),
    Bad("resume-runners", [*RESUME, "run", "--runners", "2"], "--runners"),
    # --- train --seeds ----------------------------------------------------------------------
    Bad("seeds-reversed", ["train", "--seeds", "9-0"], "write it low-high"),
    Bad("seeds-not-numbers", ["train", "--seeds", "first-last"], "expected seeds like 0-9"),
    Bad("seeds-repeated", ["train", "--seeds", "0,1,1"], "appear more than once"),
    Bad("seeds-too-many", ["train", "--seeds", "0-300000"], "more than 1000 seeds"),
    Bad("seeds-out-of-range", ["train", "--seeds", "4294967296"], "seed 4294967296 is out of range"),
    Bad("seeds-threshold-nan", [*SEEDS, "--threshold", "nan"], "--threshold must be a finite number"),
    Bad("seeds-too-many-workers", [*SEEDS, "--workers", "100000"], "CPU(s)"),
    Bad("seeds-and-seed", [*SEEDS, "--seed", "3"], "--seed cannot be combined"),
    Bad("seeds-and-resume", [*SEEDS, "--resume", "run"], "--resume cannot be combined"),
    Bad("seeds-no-workers", [*SEEDS, "--workers", "0"], "--workers must be at least 1"),
    Bad("seeds-address-without-ray", [*SEEDS, "--address", "auto"], "add --executor ray"),
    Bad("seeds-runs-dir-is-a-file", [*SEEDS, "--runs-dir", "notes.txt"], "is a file, not a folder"),
    Bad("seeds-ray-bad-address", [*SEEDS, "--executor", "ray", "--address", "head-node"], "HOST:6379", "ray"),
    # nothing listens on port 1 of this machine: refused at once, where Ray would retry for minutes
    Bad(
        "seeds-ray-unreachable",
        [*SEEDS, "--executor", "ray", "--address", "127.0.0.1:1"],
        "nothing answers there",
        "ray",
    ),
    Bad("threshold-without-seeds", ["train", "--threshold", "400"], "only with --seeds"),
    Bad("workers-without-seeds", ["train", "--workers", "4"], "only with --seeds"),
    # --- evaluate ---------------------------------------------------------------------------
    Bad("evaluate-missing", ["evaluate", "nope.zip"], "does not exist"),
    Bad("evaluate-not-a-run", ["evaluate", "."], "is not a run folder"),
    Bad("evaluate-no-target", ["evaluate"], "the following arguments are required"),
    Bad("evaluate-no-model-yet", ["evaluate", "run-empty"], "saved no model yet"),
    Bad("evaluate-yaml-bomb", ["evaluate", "run-bomb"], "the YAML expands to more than 100,000 values"),
    Bad("evaluate-env-module", ["evaluate", "run-env-module"], "whose module 'evil_module' Gymnasium would import"),
    Bad("evaluate-seed-negative", ["evaluate", "run", "--seed", "-1"], "--seed must be in [0, 2147483647]"),
    Bad("evaluate-no-best", ["evaluate", "run-nobest", "--best"], "has no best_model.zip"),
    Bad("evaluate-best-of-a-file", ["evaluate", "run/model.zip", "--best"], "give the run folder"),
    Bad("evaluate-zip-without-safe-copy", ["evaluate", "corrupt.zip", "--env", CARTPOLE], "pass --trust-pickle"),
    Bad("evaluate-damaged-zip", ["evaluate", "corrupt.zip", "--env", CARTPOLE, "--trust-pickle"], "cannot load a"),
    Bad("evaluate-episodes-zero", ["evaluate", "run", "--episodes", "0"], "--episodes must be at least 1"),
    Bad("evaluate-episodes-word", ["evaluate", "run", "--episodes", "ten"], "invalid int value: 'ten'"),
    Bad("evaluate-unknown-env", ["evaluate", "run", "--env", "pomdp/Nope-v0"], "unknown env id"),
    Bad("evaluate-gym-packages-missing", ["evaluate", "run", "--gym-packages", "no_such_env_pkg"], "cannot import"),
    Bad("evaluate-other-spaces", ["evaluate", "run", "--env", "pomdp/TMaze-v0"], "trained on observations"),
    Bad("evaluate-video-suffix", ["evaluate", "run", "--video", "episode.avi"], "use a .gif or .mp4"),
    Bad("evaluate-video-episodes", ["evaluate", "run", "--video", "v.gif", "--video-episodes", "0"], "at least 1"),
    Bad("evaluate-plot-suffix", ["evaluate", "run", "--plot", "plot.jpg"], "use a .png file name"),
    Bad("evaluate-json-folder", ["evaluate", "run", "--json", "."], "is a folder: give a file name"),
    Bad("evaluate-json-under-a-file", ["evaluate", "run", "--json", "notes.txt/eval.json"], "cannot write there"),
    # --- export -----------------------------------------------------------------------------
    Bad("export-missing", ["export", "nope.zip"], "does not exist"),
    Bad("export-not-a-run", ["export", "."], "is not a run folder"),
    Bad("export-format", ["export", "run", "--format", "tflite"], "invalid choice: 'tflite'"),
    Bad("export-out-suffix", ["export", "run", "--out", "policy.txt"], "use a .onnx file name"),
    Bad("export-out-folder", ["export", "run", "--out", "."], "is a folder"),
    Bad("export-out-under-a-file", ["export", "run", "--out", "notes.txt/policy.onnx"], "is a file, not a folder"),
    Bad(
        "export-safe-out-under-a-file",
        ["export", "run", "--format", "safe", "--out", "notes.txt/agent"],
        "is a file, not a folder",
    ),
    Bad("export-opset-old", ["export", "run", "--opset", "9"], "ONNX opset 9 is not supported"),
    Bad("export-opset-new", ["export", "run", "--opset", "99"], "ONNX opset 99 is not supported"),
    Bad("export-opset-too-old-for-the-graph", ["export", "run", "--opset", "11"], "onnxruntime cannot load"),
    Bad("export-safe-with-value", ["export", "run", "--format", "safe", "--include-value"], "options of --format onnx"),
    Bad("export-best-of-a-file", ["export", "run/model.json", "--best"], "give the folder, not a file"),
    Bad("export-half-a-safe-copy", ["export", "policy.json"], "policy.safetensors is missing"),
    Bad("export-safe-of-safe", ["export", "run/model.json", "--format", "safe"], "is already the safe copy"),
    Bad("export-no-best", ["export", "run-nobest", "--best"], "has no best_model.zip"),
    Bad("export-damaged-zip", ["export", "corrupt.zip", "--trust-pickle"], "cannot load a RecurrentPPO model"),
    # --- package ----------------------------------------------------------------------------
    Bad("package-no-out", ["package", "run"], "the following arguments are required: --out"),
    Bad("package-not-a-run", ["package", ".", "--out", "agent"], "is not a run folder"),
    Bad("package-out-holds-files", ["package", "run", "--out", "."], "is a folder that holds files"),
    Bad("package-out-is-a-file", ["package", "run", "--out", "notes.txt"], "is a file: give a folder"),
    Bad("package-episodes", ["package", "run", "--out", "agent", "--episodes", "0"], "--episodes must be at least 1"),
    Bad("package-unfinished", ["package", "run-empty", "--out", "agent"], "saved no model yet"),
    # --- tune -------------------------------------------------------------------------------
    Bad("tune-unknown-preset", ["tune", "--preset", "tmaze"], "unknown preset 'tmaze'"),
    Bad("tune-sac", ["tune", "--preset", "pendulum-novel-sac"], "tuning RecurrentSAC is not supported yet"),
    Bad("tune-config-missing", ["tune", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    Bad("tune-set", ["tune", "--set", "n_steps=many"], "expected an integer >= 1, got 'many'"),
    Bad("tune-device", ["tune", "--set", "device=cuda:99"], "device 'cuda:99'"),
    Bad("tune-trials-zero", ["tune", "--trials", "0"], "--trials must be at least 1"),
    Bad("tune-trials-word", ["tune", "--trials", "many"], "invalid int value: 'many'"),
    Bad("tune-timeout-negative", ["tune", "--timeout", "-60"], "--timeout must be positive"),
    Bad("tune-timeout-nan", ["tune", "--timeout", "nan"], "a finite number of seconds"),
    Bad("tune-sampler-seed-negative", ["tune", "--sampler-seed", "-1"], "--sampler-seed must be in [0, "),
    Bad("tune-trial-seeds-too-many", ["tune", "--trial-seeds", "1000"], "--trial-seeds must be in [1, 100]"),
    Bad("tune-sampler", ["tune", "--sampler", "grid"], "invalid choice: 'grid'"),
    Bad("tune-pruner", ["tune", "--pruner", "hyperband"], "invalid choice: 'hyperband'"),
    Bad("tune-study-with-slash", ["tune", "--study", "gru/v2"], "--study 'gru/v2' is not a plain name"),
    Bad("tune-runs-dir-is-a-file", ["tune", "--runs-dir", "notes.txt"], "is a file, not a folder"),
    Bad("tune-storage-scheme", ["tune", "--storage", "sqlite:/study.db"], "cannot open this Optuna storage"),
    Bad("tune-storage-folder", ["tune", "--storage", "sqlite:///."], "is a folder, not a database file"),
    Bad("tune-storage-under-a-file", ["tune", "--storage", "sqlite:///notes.txt/study.db"], "notes.txt is a file"),
    Bad("tune-no-workers", ["tune", "--workers", "0"], "--workers must be at least 1"),
    Bad("tune-address-without-ray", ["tune", "--address", "auto"], "add --executor ray"),
    Bad("tune-ray-bad-address", ["tune", "--executor", "ray", "--address", "head-node"], "HOST:6379", "ray"),
    Bad(
        "tune-ray-unreachable",
        ["tune", "--executor", "ray", "--address", "127.0.0.1:1"],
        "nothing answers there",
        "ray",
    ),
    Bad("space-missing", ["tune", "--space", "nope.yaml"], "cannot read it"),
    Bad("space-malformed", ["tune", "--space", "space-malformed.yaml"], "malformed YAML at line 2"),
    Bad("space-list", ["tune", "--space", "space-list.yaml"], "expected a mapping of parameter names"),
    Bad("space-unknown-parameter", ["tune", "--space", "space-typo.yaml"], "unknown search parameter"),
    Bad("space-batch-size", ["tune", "--space", "space-batch.yaml"], "batch_size is set through minibatches"),
    Bad("space-reversed-range", ["tune", "--space", "space-reversed.yaml"], "empty range"),
    Bad("space-log-from-zero", ["tune", "--space", "space-log-zero.yaml"], "a log range needs low > 0"),
    Bad("space-step-zero", ["tune", "--space", "space-step.yaml"], "step must be a number > 0"),
    Bad("space-n-steps-range", ["tune", "--space", "space-n-steps-range.yaml"], "give a list of choices"),
    Bad("space-no-choices", ["tune", "--space", "space-no-choices.yaml"], "empty list of choices"),
    Bad("space-not-dividing", ["tune", "--space", "space-no-divide.yaml"], "does not split into 7 minibatches"),
    Bad("space-text-bound", ["tune", "--space", "space-text.yaml"], "low and high must be finite numbers"),
    Bad("space-infinite-bound", ["tune", "--space", "space-infinite.yaml"], "low and high must be finite numbers"),
    Bad("space-yaml-bomb", ["tune", "--space", "space-laughs.yaml"], "the YAML expands to more than"),
    Bad("space-range-keys", ["tune", "--space", "space-range-keys.yaml"], "a range is {low: L, high: H}"),
    # --- pretrain ---------------------------------------------------------------------------
    Bad("pretrain-nothing", ["pretrain"], "nothing to pretrain"),
    Bad("pretrain-preset-typo", ["pretrain", "--preset", "cartpole"], "Did you mean 'cartpole-novel'"),
    Bad("pretrain-set-unknown", [*PRETRAIN, "--set", "train.epoch=3"], "Did you mean 'epochs'"),
    Bad("pretrain-set-no-equals", [*PRETRAIN, "--set", "train.epochs"], "--set expects KEY=VALUE"),
    Bad("pretrain-set-range", [*PRETRAIN, "--set", "train.epochs=0"], "expected an integer >= 1, got 0"),
    Bad("pretrain-memory", [*PRETRAIN, "--set", "model.memory=gpt"], "is not a memory type"),
    Bad("pretrain-env", ["pretrain", "--set", "data.env_id=pomdp/CartPole-v1"], "unknown env id"),
    Bad("pretrain-config-missing", ["pretrain", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    Bad("pretrain-config-toml", ["pretrain", "--config", "pretrain.toml"], "malformed TOML"),
    Bad("pretrain-config-json", ["pretrain", "--config", "pretrain.json"], "malformed JSON at line 1"),
    Bad("pretrain-config-module", ["pretrain", "--config", "pretrain-module.yaml"], "--set data.policy=os:system"),
    Bad("pretrain-config-outside", ["pretrain", "--config", "pretrain-outside.yaml"], "leads outside its folder"),
    Bad("pretrain-config-bomb", ["pretrain", "--config", "laughs.yaml"], "the YAML expands to more than"),
    Bad("pretrain-policy-missing", [*PRETRAIN, "--set", "data.policy=nope.zip"], "nope.zip does not exist"),
    Bad("pretrain-too-few-steps", [*PRETRAIN, "--set", "data.n_steps=5"], "leaves an empty split"),
    Bad("pretrain-runs-dir-is-a-file", [*PRETRAIN, "--runs-dir", "notes.txt"], "is a file, not a folder"),
    # --- the command itself -----------------------------------------------------------------
    Bad("unknown-command", ["fit"], "invalid choice: 'fit'"),
    Bad(
        "unknown-option-zoo",
        ["train", "--hyperparameters", "n_steps:64"],
        "unrecognized argument --hyperparameters; did you mean --hyperparams? settings go in --set KEY=VALUE",
    ),
    Bad("unknown-option-config-key", ["train", "--n-steps", "64"], "n_steps is a config key: --set n_steps=VALUE"),
    Bad("unknown-option-evaluate", ["evaluate", "run", "--episodez", "3"], "did you mean --episodes?"),
    Bad("track-project-alone", ["train", "--wandb-project", "p"], "--wandb-project goes with --track wandb"),
    Bad("track-with-seeds", ["train", "--track", "wandb", "--seeds", "0-1"], "--track logs one run"),
    Bad("hyperparams-not-zoo-form", ["train", "--hyperparams", "n_steps=64"], "--hyperparams expects KEY:VALUE"),
]

INSTALL = {"optuna": "pip install 'recurrent_rl[tune]'", "ray": "pip install 'recurrent_rl[ray]'"}


# --- running one row -------------------------------------------------------------------------------


class Outcome(NamedTuple):
    code: int | str | None
    out: str
    err: str
    argparse: bool  # argparse refused it (SystemExit): its usage lines come before the error line

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if ": error: " in line]


def make_run_folders(finished: Path, parent: Path) -> Path:
    """Copies of the finished run ``finished`` in ``parent``, one per RUN_FOLDERS entry."""
    for name, breakage in RUN_FOLDERS.items():
        shutil.copytree(finished, parent / name)
        if breakage is not None:
            breakage(parent / name)
    return parent


def prepare(row: Bad, folder: Path, run_folders: Path) -> None:
    """The scratch folder of ``row``: every file of FILES and the run folders it names."""
    for name, content in FILES.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    named = {arg.split("/")[0] for arg in row.argv}
    for name in RUN_FOLDERS:
        if name in named:
            shutil.copytree(run_folders / name, folder / name)


def run_row(row: Bad) -> Outcome:
    """Run ``row`` in the current folder, through the CLI's main function, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    argparse_error = False
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: int | str | None = cli.main(list(row.argv))
        except SystemExit as exit_:
            code, argparse_error = exit_.code, True
    return Outcome(code, out.getvalue(), err.getvalue(), argparse_error)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (folders as None), with the bytes of each file."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def expected_fragment(row: Bad, outcome: Outcome) -> str:
    """The row's fragment, or the install hint of an optional package it needs that is not installed."""
    if not outcome.argparse:
        for module in (["optuna"] if row.argv[0] == "tune" else []) + ([row.needs] if row.needs else []):
            if importlib.util.find_spec(module) is None:
                return INSTALL[module]
    return row.fragment


# --- the tests ---------------------------------------------------------------------------------------


def test_the_table_has_distinct_rows():
    ids = [row.id for row in BAD_INPUTS]
    assert len(BAD_INPUTS) >= 65 and len(set(ids)) == len(ids), "ids must be distinct"
    inputs = [input_cell(row) for row in BAD_INPUTS]
    assert len(set(inputs)) == len(inputs), "inputs must be distinct"
    named = {name.split("/")[0] for row in BAD_INPUTS for name in row.argv}
    assert {name for name in FILES if name.endswith((".yaml", ".toml"))} <= named, "a file no row uses"


@pytest.fixture(scope="module")
def run_folders(tiny_run, tmp_path_factory) -> Path:  # noqa: F811  the fixture imported above
    return make_run_folders(tiny_run, tmp_path_factory.mktemp("run-folders"))


@pytest.mark.parametrize("row", BAD_INPUTS, ids=[row.id for row in BAD_INPUTS])
def test_bad_input(row, run_folders, tmp_path, monkeypatch):
    prepare(row, tmp_path, run_folders)
    monkeypatch.chdir(tmp_path)  # the default --runs-dir (runs) would land here
    before = snapshot(tmp_path)
    outcome = run_row(row)
    shown = f"recurrent-rl {shlex.join(row.argv)}\nstdout: {outcome.out}\nstderr: {outcome.err}"
    assert outcome.code == 2, shown
    assert "Traceback" not in outcome.out + outcome.err, shown
    assert len(outcome.error_lines) == 1, shown
    line = outcome.error_lines[0]
    assert line.startswith("recurrent-rl"), shown
    assert expected_fragment(row, outcome) in line, shown
    others = [other for other in outcome.err.splitlines() if other.strip() and other != line]
    if outcome.argparse:  # its usage, then the error line
        assert others and others[0].startswith("usage: recurrent-rl") and outcome.err.rstrip().endswith(line), shown
    else:  # notes may come first ("note: reading SB3's zip ..."), nothing else
        assert all(other.startswith("note: ") for other in others), shown
    assert outcome.out == "", shown
    assert snapshot(tmp_path) == before, f"{shown}\nthe input changed files on disk"
    documented = documented_messages(DOC.read_text(encoding="utf-8")).get(input_cell(row))
    assert message_cell(outcome, tmp_path) == documented, (
        f"{shown}\ndocs/bad-inputs.md shows another message for this input: {documented}; rebuild the table: "
        "python -m tests.test_bad_inputs --write"
    )


def test_docs_list_the_same_inputs():
    documented = documented_inputs(DOC.read_text(encoding="utf-8"))
    expected = [input_cell(row) for row in BAD_INPUTS]
    assert documented == expected, (
        "docs/bad-inputs.md's table of bad inputs differs from BAD_INPUTS in tests/test_bad_inputs.py; "
        "rebuild it: python -m tests.test_bad_inputs --write"
    )


# --- the table in docs/bad-inputs.md ------------------------------------------------------------------------


def code(text: str) -> str:
    """``text`` as a Markdown code span (doubled backticks when it holds one)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def input_cell(row: Bad) -> str:
    """The command line, then what each file it names holds."""
    cell = code(f"recurrent-rl {shlex.join(row.argv)}")
    for name in dict.fromkeys(arg.split("/")[0] for arg in row.argv):
        content = FILES.get(name)
        if name.endswith((".yaml", ".toml", ".json")) and content is not None:
            text = content.decode("latin-1") if isinstance(content, bytes) else content
            shown = text.rstrip("\n").replace("\t", "\\t").replace("\n", "\\n") or "(empty)"
            cell += f" with {code(name)}: {code(shown)}"
    assert "|" not in cell, cell
    return cell


def message_cell(outcome: Outcome, folder: Path) -> str:
    line = outcome.error_lines[0] if outcome.error_lines else outcome.err.strip().splitlines()[0]
    line = line.replace(f"{folder}/", "").replace(str(folder), ".")
    if len(line) > LONGEST_MESSAGE:
        line = line[: LONGEST_MESSAGE - 3].rstrip() + "..."
    return code(line.replace("|", "/"))


def documented_inputs(text: str) -> list[str]:
    """The input column of the table between TABLE_START and TABLE_END."""
    if TABLE_START not in text or TABLE_END not in text:
        return []
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # no header
    return [line[2:].split(" | ", 1)[0] for line in rows]


def documented_messages(text: str) -> dict[str, str]:
    """The message column of the table, by its input cell."""
    if TABLE_START not in text or TABLE_END not in text:
        return {}
    table = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # no header
    return dict(line[2:].rstrip(" |").split(" | ", 1) for line in rows)  # type: ignore[misc]


def markdown_table() -> str:
    """Run every row (after training a tiny run) and return the Markdown table of inputs and messages."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch).resolve()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trained = cli.main(["train", "--runs-dir", str(scratch), "--name", "tiny", *TINY])
        assert trained == 0, "the tiny run did not train"
        runs = make_run_folders(scratch / "tiny", scratch / "runs")
        lines = ["| command / input | message |", "|---|---|"]
        for number, row in enumerate(BAD_INPUTS):
            folder = scratch / f"row{number}"
            folder.mkdir()
            prepare(row, folder, runs)
            os.chdir(folder)
            try:
                outcome = run_row(row)
            finally:
                os.chdir(ROOT)
            if outcome.code != 2 or not any(expected_fragment(row, outcome) in line for line in outcome.error_lines):
                raise SystemExit(f"{row.id}: exit code {outcome.code}, no {row.fragment!r} in stderr:\n{outcome.err}")
            lines.append(f"| {input_cell(row)} | {message_cell(outcome, folder)} |")
    return "\n".join(lines) + "\n"


def write_docs(table: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        raise SystemExit(f"{DOC} has no {TABLE_START} ... {TABLE_END} section")
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    DOC.write_text(f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table(), end="")
    elif sys.argv[1:] == ["--write"]:
        write_docs(markdown_table())
        print(f"wrote the table of {len(BAD_INPUTS)} bad inputs into {DOC}")
    else:
        raise SystemExit("usage: python -m tests.test_bad_inputs --markdown | --write")
