"""Devices: what ``auto`` picks, every path on a second device, runs that move between devices.

Without a GPU the second device is ``meta`` under :class:`tests.device_check.MetaDevice`, which
raises where an op mixes devices (as CUDA does). The ``device`` parameter adds CUDA where torch
sees one (``scripts/gpu_check.sh`` runs them on a GPU machine).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from recurrent_rl import RecurrentPPO
from recurrent_rl.cli import main
from recurrent_rl.config.presets import DEFAULT_PRESET, load_preset
from recurrent_rl.io import run_folder as runs
from recurrent_rl.nets import memory
from recurrent_rl.nets.devices import LARGE_MEMORY, choose_device
from recurrent_rl.runs.resume import load_checkpoint
from recurrent_rl.runs.training import train
from recurrent_rl.supervised.config import FitConfig
from recurrent_rl.supervised.data import SequenceDataset
from recurrent_rl.supervised.models import SequenceModel, SequenceModelConfig
from recurrent_rl.supervised.trainer import evaluate, fit
from recurrent_rl.sweeps import executors
from tests.device_check import MetaDevice, MixedDevicesError

CUDA = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
MEMORIES = ("gru", "lstm", "mingru", "transformer")
TINY = ["n_envs=2", "n_steps=16", "batch_size=32", "n_timesteps=64", "eval.freq=0", "eval.final_episodes=1"]


def _dataset(per_step: bool, n: int = 12) -> SequenceDataset:
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(int(t), 3)).astype(np.float32) for t in rng.integers(3, 9, n)]
    if per_step:
        targets = [rng.normal(size=(len(x), 2)).astype(np.float32) for x in inputs]
    else:
        targets = [rng.normal(size=(2,)).astype(np.float32) for _ in inputs]
    return SequenceDataset(inputs, targets, per_step=per_step)


def _sequence_model(per_step: bool) -> SequenceModel:
    task = "many_to_many" if per_step else "many_to_one"
    return SequenceModel(
        SequenceModelConfig(input_size=3, output_size=2, hidden_size=8, task=task, objective="regression")
    )


# --- what auto picks ------------------------------------------------------------------------------


def test_auto_keeps_small_vector_policies_on_the_cpu_and_sends_images_and_large_memories_to_cuda():
    box = spaces.Box(-1, 1, (4,))
    image = spaces.Box(0, 255, (3, 36, 36), dtype=np.uint8)
    assert choose_device(box, {}, cuda=False).device.type == "cpu"
    assert choose_device(image, {}, cuda=False).device.type == "cpu"  # no GPU: the CPU, whatever the policy
    assert choose_device(box, {"hidden_size": 128}, cuda=True).device.type == "cpu"
    assert choose_device(box, {"hidden_size": LARGE_MEMORY}, cuda=True).device.type == "cuda"
    assert choose_device(image, {}, cuda=True).device.type == "cuda"
    assert choose_device(spaces.Dict({"frame": image, "v": box}), {}, cuda=True).device.type == "cuda"
    assert "speed backend" in choose_device(box, {}, cuda=True).line()


def test_auto_follows_the_rule_for_new_and_loaded_models(tmp_path, monkeypatch):
    monkeypatch.setattr(th.cuda, "is_available", lambda: True)  # SB3's auto would take CUDA now
    model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16)
    assert model.device.type == "cpu" and model.policy.backend_name == "cpu-kernels"
    model.save(tmp_path / "m.zip")
    assert RecurrentPPO.load(tmp_path / "m.zip").device.type == "cpu"


def test_the_run_says_which_device_and_why(tmp_path, capsys):
    result = train(load_preset(DEFAULT_PRESET, [*TINY, "device=auto"]), tmp_path, name="run", progress_bar=False)
    assert "device: cpu (auto: no CUDA device here)" in capsys.readouterr().err
    assert runs.read_run_info(result.run_dir)["device"] == "cpu"


# --- the supervised side on a second device -------------------------------------------------------


@pytest.mark.parametrize("per_step", [False, True])
def test_fit_makes_its_batches_on_the_models_device(per_step):
    model = _sequence_model(per_step).to("meta")
    mode = MetaDevice()
    with mode:  # before the batches were made where the model is, the first forward mixed cpu and meta
        fit(model, _dataset(per_step), FitConfig(epochs=2, batch_size=4, val_fraction=0.25), log=None)
        evaluate(model, _dataset(per_step))
    assert mode.ops > 0 and all(p.is_meta for p in model.parameters())


def test_fit_moves_the_model_to_its_configured_device():
    model = _sequence_model(per_step=False)
    with MetaDevice():
        fit(model, _dataset(False), FitConfig(epochs=1, batch_size=4, device="meta"), log=None)
    assert all(p.is_meta for p in model.parameters())


def test_the_device_check_catches_a_batch_left_on_the_cpu():
    model = _sequence_model(per_step=False).to("meta")
    with MetaDevice(), pytest.raises(MixedDevicesError, match="cpu"):
        model(th.zeros(4, 2, 3))


@pytest.mark.parametrize("device", DEVICES)
def test_supervised_fit_on_each_device(device):
    model = _sequence_model(per_step=True)
    result = fit(model, _dataset(True), FitConfig(epochs=2, batch_size=4, device=device), log=None)
    assert np.isfinite(result.history[-1]["train_loss"])
    assert next(model.parameters()).device.type == device


def test_pretrain_refuses_a_device_this_machine_lacks_before_recording(tmp_path, capsys):
    if th.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = ["pretrain", "--preset", "cartpole-novel", "--device", "cuda", "--runs-dir", str(tmp_path)]
    assert main(args) == 2
    assert "CUDA is not available" in capsys.readouterr().err and not any(tmp_path.iterdir())


# --- the RL path on a second device ---------------------------------------------------------------


@pytest.mark.parametrize("memory_type", MEMORIES)
def test_rollout_update_and_predict_on_a_second_device(memory_type):
    model = RecurrentPPO(
        "MlpGruPolicy",
        "pomdp/CartPoleNoVel-v1",
        n_steps=16,
        batch_size=32,
        n_epochs=2,
        device="meta",
        policy_kwargs=dict(memory=memory_type, hidden_size=8),
    )
    assert model.policy.backend_name == "torch" and type(model.policy.optimizer) is th.optim.Adam
    mode = MetaDevice()
    with mode:
        model.learn(64)
        actions, state = model.predict(np.zeros((1, 4), np.float32), episode_start=np.ones(1, bool))
        model.predict(np.zeros((1, 4), np.float32), state=state, episode_start=np.zeros(1, bool))
    assert mode.ops > 0 and actions.shape == (1,)


def test_the_optimizer_is_chosen_again_with_its_state_after_a_move():
    model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=32, device="cpu")
    model.learn(32)
    before = model.policy.optimizer
    assert type(before).__name__ == "PolicyAdam"
    moments = {i: s["exp_avg"].clone() for i, s in enumerate(before.state_dict()["state"].values())}
    model.policy.to("meta")
    after = model.policy.optimizer
    assert type(after) is th.optim.Adam and after.defaults["eps"] == 1e-5
    state = after.state_dict()["state"]
    assert len(state) == len(moments)
    assert all(s["exp_avg"].is_meta and s["exp_avg"].shape == moments[i].shape for i, s in enumerate(state.values()))
    assert after.param_groups[0]["lr"] == before.param_groups[0]["lr"]


def test_the_diagnostics_read_the_device_once_per_rollout_not_per_step_or_parameter():
    from recurrent_rl.runs.callbacks import MemoryDiagnostics

    def reads(callbacks: list) -> int:
        model = RecurrentPPO(
            "MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0, device="meta"
        )
        mode = MetaDevice()
        with mode:
            model.learn(32, callback=callbacks)  # 2 rollouts of 16 steps, 2 updates of 1 minibatch
        return mode.reads

    diagnostics = MemoryDiagnostics()
    extra = reads([diagnostics]) - reads([])
    # one read of the gradient norms and one of the state norms per rollout (before: one per
    # step, and one per parameter at each backward pass)
    assert 0 < extra <= 2 * 2, extra


def test_cores_that_reset_inside_their_call_cut_no_segments(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("segments computed for a core that ignores them")

    cores = [memory.MemoryCore("mingru", 3, 8, 1), memory.MemoryCore("transformer", 3, 8, 1)]
    monkeypatch.setattr(memory.Segments, "from_episode_starts", refuse)
    starts = th.zeros(5, 2)
    starts[2, 1] = 1
    xs = [th.zeros(5, 2, 3)] * 2
    out = memory.forward_cores(cores, xs, [c.initial_state(2) for c in cores], starts)
    assert [o.shape for o, _ in out] == [(5, 2, 8)] * 2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_type", MEMORIES)
def test_learn_save_and_load_across_devices(tmp_path, device, memory_type):
    model = RecurrentPPO(
        "MlpGruPolicy",
        "pomdp/CartPoleNoVel-v1",
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        seed=0,
        device=device,
        policy_kwargs=dict(memory=memory_type, hidden_size=8),
    )
    model.learn(32)
    obs = np.ones((1, 4), np.float32)
    expected, _ = model.predict(obs, episode_start=np.ones(1, bool), deterministic=True)
    from recurrent_rl.io.safe import save_safe

    save_safe(model, tmp_path / "m", optimizer=True)
    for other in ("cpu", device):
        loaded = RecurrentPPO.load_safe(tmp_path / "m", device=other, optimizer=True)
        assert loaded.device.type == other
        moments = [s["exp_avg"] for s in loaded.policy.optimizer.state.values()]
        assert moments and all(m.device.type == other for m in moments)
        actions, _ = loaded.predict(obs, episode_start=np.ones(1, bool), deterministic=True)
        assert np.array_equal(actions, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_onnx_export_of_a_model_on_each_device(tmp_path, device):
    from recurrent_rl.export.onnx import export_onnx

    model = RecurrentPPO(
        "MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, device=device, policy_kwargs=dict(hidden_size=8)
    )
    export_onnx(model, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").stat().st_size > 0 and model.device.type == device


# --- runs that move between devices ---------------------------------------------------------------


def _cpu_run(tmp_path: Path) -> Path:
    return train(load_preset(DEFAULT_PRESET, [*TINY, "device=cpu"]), tmp_path, name="run", progress_bar=False).run_dir


def test_a_checkpoint_written_on_the_cpu_resumes_and_evaluates_on_a_second_device(tmp_path):
    run = _cpu_run(tmp_path)
    from recurrent_rl.config.loading import load_config
    from recurrent_rl.runs.evaluation import evaluate as evaluate_agent, load_agent
    from recurrent_rl.runs.vec_env import make_training_env

    config = load_config(run / runs.CONFIG)
    env = make_training_env(config, 1)
    model = load_checkpoint(runs.latest_checkpoint(run), env, config, safe=True, device="meta")
    assert model.device.type == "meta"
    assert all(s["exp_avg"].is_meta for s in model.policy.optimizer.state.values())
    with MetaDevice():
        model.learn(32, reset_num_timesteps=False)
        report = evaluate_agent(load_agent(run, device="meta"), 1)
    assert len(report.returns) == 1


def test_resume_on_the_cpu_a_run_whose_config_says_cuda(tmp_path, capsys):
    if th.cuda.is_available():
        pytest.skip("this machine has CUDA: the config's device works here")
    run = _cpu_run(tmp_path)
    config_file = run / runs.CONFIG
    config_file.write_text(config_file.read_text().replace("device: cpu", "device: cuda"))
    assert main(["train", "--resume", str(run), "--timesteps", "96", "--no-progress"]) == 2
    assert "--device cpu" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--timesteps", "96", "--device", "cpu", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "device: cpu" in err
    info = runs.read_run_info(run)
    assert info["num_timesteps"] >= 96 and info["resumes"][-1]["device"] == "cpu"
    assert "device: cuda" in config_file.read_text()  # the run's config is left as it was
    assert main(["evaluate", str(run), "--episodes", "1", "--device", "cpu"]) == 0


def test_evaluate_and_export_refuse_a_device_this_machine_lacks(tmp_path, capsys):
    if th.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["evaluate", str(tmp_path), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--device", "cuda:3"]) == 2
    assert main(["export", str(tmp_path), "--device", "nonsense"]) == 2
    assert "unknown device" in capsys.readouterr().err


# --- sweeps on GPU machines -----------------------------------------------------------------------


def _where(_: int) -> tuple[int, str | None]:
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_ray_tasks_ask_for_a_share_of_a_gpu_only_on_cuda():
    assert executors.ray_gpu_fraction("cuda", 4) == 0.25
    assert executors.ray_gpu_fraction("cuda:1", 1) == 1.0
    assert executors.ray_gpu_fraction("cpu", 4) == executors.ray_gpu_fraction("auto", 4) == 0.0


def test_local_workers_are_limited_per_gpu_and_spread_over_the_gpus(monkeypatch):
    # cuda:N, one task per GPU: one worker, so the tasks run here one after the other
    assert {pid for pid, _ in executors.run_tasks(_where, [0, 1], workers=2, device="cuda:0", workers_per_gpu=1)} == {
        os.getpid()
    }
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["3", "5"])
    seen = executors.run_tasks(_where, [0, 1], workers=4, device="cuda", workers_per_gpu=1)
    assert sorted(gpu for _, gpu in seen) == ["3", "5"] and os.getpid() not in {pid for pid, _ in seen}
    with pytest.raises(ValueError, match="workers-per-gpu"):
        executors.run_tasks(_where, [0], device="cuda", workers_per_gpu=0)
