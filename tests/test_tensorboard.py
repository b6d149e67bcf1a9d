"""TensorBoard: the event files of a run, read back, and served by a real TensorBoard server."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recurrent_rl.io import run_folder as runs
from recurrent_rl.runs import cli
from recurrent_rl.runs.callbacks import ALWAYS_TAGS

TINY = [
    "--timesteps",
    "384",
    "--set",
    "n_envs=2",
    "--set",
    "n_steps=32",
    "--set",
    "batch_size=64",
    "--set",
    "eval.freq=128",
    "--set",
    "eval.episodes=4",
    "--set",
    "eval.final_episodes=4",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tmaze_run(tmp_path_factory) -> Path:
    # the T-maze reports info["success"], so the success-rate tags appear too
    runs_dir = tmp_path_factory.mktemp("runs")
    assert cli.main(["train", "--preset", "tmaze-gru", "--runs-dir", str(runs_dir), "--name", "tmaze", *TINY]) == 0
    return runs_dir / "tmaze"


def test_event_files_hold_the_documented_tags(tmaze_run):
    events = EventAccumulator(str(tmaze_run / runs.TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        *ALWAYS_TAGS,
        "rollout/success_rate",
        "eval/success_rate",
        "eval/final_mean_reward",
        "eval/final_success_rate",
        "grad/critic_memory_norm",
        "memory/critic_state_norm",
    }
    assert not expected - tags, sorted(expected - tags)
    rates = [e.value for e in events.Scalars("eval/success_rate")]
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert json.loads((tmaze_run / runs.EVAL_REPORT).read_text())["success_rate"] is not None
    grads = [e.value for e in events.Scalars("grad/actor_memory_norm")]
    assert all(g > 0 for g in grads)  # the memory core learns
    hparams = events.PluginTagToContent("hparams")
    assert (
        "_hparams_/session_start_info" in hparams
        and b"policy_kwargs.hidden_size" in hparams["_hparams_/session_start_info"]
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        return json.loads(response.read())


def test_a_tensorboard_server_serves_the_run(tmaze_run, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "tensorboard.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(tmaze_run),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--reload_interval",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        tags = {}
        for _ in range(180):  # polls 0.5 s apart: a bounded wait for the server and its first load
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            try:
                tags = get_json(f"{base}/data/plugin/scalars/tags")
            except OSError:
                tags = {}
            if runs.TENSORBOARD in tags and "eval/mean_reward" in tags[runs.TENSORBOARD]:
                break
            time.sleep(0.5)
        assert runs.TENSORBOARD in tags, f"TensorBoard did not serve the run after 180 polls: {tags}"
        served = set(tags[runs.TENSORBOARD])
        assert not set(ALWAYS_TAGS) - served, sorted(set(ALWAYS_TAGS) - served)
        query = urllib.parse.urlencode({"run": runs.TENSORBOARD, "tag": "eval/mean_reward"})
        points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
        steps = [point[1] for point in points]  # [wall_time, step, value]
        assert steps and steps == sorted(steps) and max(steps) >= 384
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_memory_diagnostics_read_the_state_the_rollout_step_produced():
    # The algorithm publishes its memory after each rollout step as model.rollout_state; the
    # memory/ tags come from it. If collect_rollouts stopped updating it, this test fails.
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from recurrent_rl import RecurrentPPO
    from recurrent_rl.nets.memory import state_leaves
    from recurrent_rl.runs.callbacks import MemoryDiagnostics

    model = RecurrentPPO(
        "MlpGruPolicy",
        make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=0),
        n_steps=8,
        batch_size=16,
        n_epochs=1,
        seed=0,
        policy_kwargs=dict(hidden_size=8),
    )
    produced, seen = [], []
    forward = model.policy.forward

    def recording_forward(*args, **kwargs):  # the rollout's policy calls, and the states they return
        out = forward(*args, **kwargs)
        produced.append(out[-1])
        return out

    model.policy.forward = recording_forward

    class Seen(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(self.model.rollout_state)
            return True

    class Means(MemoryDiagnostics):
        def _on_rollout_end(self) -> None:
            self.means = {name: total / self._norm_steps for name, total in self._norm_sums.items()}
            super()._on_rollout_end()

    diagnostics = Means()
    model.learn(16, callback=[Seen(), diagnostics])
    assert len(seen) == len(produced) == 8
    assert all(s is p for s, p in zip(seen, produced))  # the policy's own state, each step, no copy
    assert not th.equal(seen[0].actor[0], seen[1].actor[0])  # it moves from step to step
    for name in ("actor", "critic"):
        expected = sum(
            th.stack([leaf.norm(dim=-1).mean() for leaf in state_leaves(getattr(s, name))]).mean().item() for s in seen
        ) / len(seen)
        assert diagnostics.means[name] == pytest.approx(expected)


def test_a_resumed_run_logs_each_step_once(tmp_path):
    import shutil

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
        "checkpoint.freq=64",
        "--set",
        "checkpoint.keep=0",
        "--set",
        "eval.freq=100000",
        "--set",
        "eval.final_episodes=0",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    run = tmp_path / "r"
    uninterrupted = loss_steps(run)
    # as if killed after step 160 with its last checkpoint at 128: the steps after it were logged
    for step, folder in runs.checkpoint_dirs(run):
        if step > 128:
            shutil.rmtree(folder)
    (run / runs.MODEL).unlink()
    runs.update_run_info(run, status="running")
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    steps = loss_steps(run)
    # no step more often than in the run that was never stopped (the one at 160 is not logged
    # again: its update's loss is in the process that was killed)
    assert not Counter(steps) - Counter(uninterrupted) and steps[-1] == 256, (steps, uninterrupted)
    assert steps == sorted(steps)


def loss_steps(run: Path) -> list[int]:
    events = EventAccumulator(str(run / runs.TENSORBOARD))
    events.Reload()
    return [e.step for e in events.Scalars("train/loss")]
