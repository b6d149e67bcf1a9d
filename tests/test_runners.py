"""Ray rollout runners (recurrent_rl.runners): the same rollouts as the in-process loop, merged
normalisation statistics, real kills, failing envs, and bad input; on a real local Ray runtime."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

ray = pytest.importorskip("ray", reason="recurrent_rl[ray] (ray) is not installed")

from recurrent_rl import MaskableRecurrentPPO, RecurrentPPO  # noqa: E402
from recurrent_rl.errors import UserInputError  # noqa: E402
from recurrent_rl.nets.memory import state_leaves  # noqa: E402
from recurrent_rl.runners import RolloutRunner, RunnerError, RunnerVecEnv, moments  # noqa: E402

ENV = "pomdp/CartPoleNoVel-v1"
SETTINGS = dict(n_steps=32, batch_size=64, sequence_length=8, n_epochs=2, seed=3, device="cpu")
POLICY = dict(hidden_size=16)


def make_cartpole() -> gym.Env:
    import recurrent_rl.envs  # noqa: F401  registers pomdp/ in the runner's process

    return gym.make(ENV)


class SlowCartPole(gym.Wrapper):
    """CartPole without velocities, each step taking ``delay`` seconds (a slow simulator)."""

    def __init__(self, delay: float = 0.004):
        super().__init__(make_cartpole())
        self.delay = delay

    def step(self, action):
        time.sleep(self.delay)
        return super().step(action)


class BrokenCartPole(gym.Wrapper):
    """Raises on its 5th step, every time."""

    env_id = "BrokenCartPole"

    def __init__(self):
        super().__init__(make_cartpole())
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 5:
            raise RuntimeError("the simulator lost its connection")
        return super().step(action)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _same_buffers(a, b) -> None:
    for name in (
        "observations",
        "actions",
        "rewards",
        "episode_starts",
        "values",
        "log_probs",
        "advantages",
        "returns",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a._state_positions == b._state_positions
    assert len(a.chunk_start_states) == len(b.chunk_start_states)
    for x, y in zip(a.chunk_start_states, b.chunk_start_states):
        for s, t in zip(state_leaves(x), state_leaves(y)):
            assert th.equal(s, t)


@pytest.mark.parametrize("fresh", [{}, {"state_refresh": True, "burn_in": 4}], ids=["stored", "refresh+burn_in"])
@pytest.mark.parametrize("algorithm", ["RecurrentPPO", "MaskableRecurrentPPO"])
def test_one_runner_collects_and_trains_exactly_as_the_local_loop(local_ray, algorithm, fresh):
    """With one runner of K envs, the same seeds and the same envs: the rollout (observations,
    actions, log-probabilities, values, chunk-start states, advantages) and the parameters after
    two iterations are the local path's, bit for bit; also with ``state_refresh`` and ``burn_in``
    (the runners record the states where each chunk's burn-in starts, and the second rollout's
    first chunks take their context from the end of the first)."""
    if algorithm == "MaskableRecurrentPPO":
        pytest.importorskip("sb3_contrib")
        env_id, cls, policy = "pomdp/VisitAll-v0", MaskableRecurrentPPO, "MlpGruPolicy"
    else:
        env_id, cls, policy = ENV, RecurrentPPO, "MlpGruPolicy"

    def make():
        import recurrent_rl.envs  # noqa: F401

        return gym.make(env_id)

    local = cls(policy, make_vec_env(env_id, n_envs=4, seed=3), policy_kwargs=POLICY, **SETTINGS, **fresh)
    local.learn(256)  # two iterations of 4 envs x 32 steps
    venv = RunnerVecEnv(make, count=1, envs_per_runner=4)
    try:
        remote = cls(policy, venv, policy_kwargs=POLICY, **SETTINGS, **fresh)
        remote.learn(256)
        _same_buffers(local.rollout_buffer, remote.rollout_buffer)
        if fresh:
            assert remote.rollout_buffer._tail is not None  # the second rollout had the first's end as context
        if algorithm == "MaskableRecurrentPPO":
            np.testing.assert_array_equal(local.rollout_buffer.action_masks, remote.rollout_buffer.action_masks)
            assert not remote.rollout_buffer.action_masks.all()  # the masks came back from the runner
        for (name, a), b in zip(local.policy.state_dict().items(), remote.policy.state_dict().values()):
            assert th.equal(a, b), name
        assert remote.num_timesteps == local.num_timesteps == 256
        assert [i["r"] for i in remote.ep_info_buffer] == [i["r"] for i in local.ep_info_buffer]
    finally:
        venv.close()


def test_tee_and_merge_give_the_statistics_of_all_the_data():
    """Runners update copies of the published statistics step by step; the learner merges their
    batches: the result equals one RunningMeanStd updated with every batch of every runner."""
    rng = np.random.default_rng(0)
    published = RunningMeanStd(shape=(3,))
    published.update(rng.normal(size=(10, 3)))
    steps = [[rng.normal(loc=i, size=(2, 3)) for i in range(3)] for _ in range(20)]  # 20 steps, 3 runners
    one_process = published.copy()
    runners = [moments.tee(published) for _ in range(3)]
    for step in steps:
        one_process.update(np.concatenate(step))
        for runner, batch in zip(runners, step):
            runner.update(batch)
    merged = published.copy()
    for runner in runners:
        moments.merge(merged, moments.batch_of(runner))
    np.testing.assert_allclose(merged.mean, one_process.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.var, one_process.var, rtol=1e-10)
    assert merged.count == pytest.approx(one_process.count)
    # a runner's own copy normalised with what it saw: the published statistics and its own batches
    alone = published.copy()
    for step in steps:
        alone.update(step[1])
    np.testing.assert_allclose(runners[1].mean, alone.mean, rtol=1e-12)


RECORDED: list[np.ndarray] = []


class RecordingCartPole(gym.Wrapper):
    """Keeps the raw observations a VecEnv hands on in RECORDED (runners driven in this process): after
    an episode's last step the VecEnv hands on the next episode's first observation, not the last one."""

    def __init__(self):
        super().__init__(make_cartpole())

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        RECORDED.append(np.asarray(obs, dtype=np.float64))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if not (terminated or truncated):
            RECORDED.append(np.asarray(obs, dtype=np.float64))
        return obs, reward, terminated, truncated, info


def test_statistics_merged_from_several_runners_are_those_of_the_data_they_saw():
    """Three runners (driven in this process) normalise with published statistics; after the
    iteration the learner's merged statistics equal those of every raw observation the runners
    saw after the reset, added to the published ones."""
    learner = VecNormalize(make_vec_env(ENV, n_envs=6, seed=0), gamma=0.9)
    model = RecurrentPPO("MlpGruPolicy", learner, n_steps=16, batch_size=96, policy_kwargs=POLICY, seed=0, device="cpu")
    published = learner.obs_rms.copy()
    spec = _spec(model)
    runners = [RolloutRunner(RecordingCartPole, 2, seed=10 * i) for i in range(3)]
    for runner in runners:
        runner.build(spec, seed=0)
        runner.reset(seed=None)
    RECORDED.clear()  # the first observations are the learner's to count (VecNormalize.reset)
    pieces = [runner.collect(model.policy.state_dict(), published, learner.ret_rms.copy(), 16) for runner in runners]
    merged = published.copy()
    for piece in pieces:
        moments.merge(merged, piece.obs_moments)
    expected = published.copy()
    expected.update(np.stack(RECORDED))
    assert merged.count == pytest.approx(expected.count) and len(RECORDED) == 3 * 2 * 16
    # equal up to float32 rounding: VecNormalize takes each step's mean of float32 observations
    np.testing.assert_allclose(merged.mean, expected.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(merged.var, expected.var, rtol=1e-6)


def _spec(model):
    from recurrent_rl.runners.group import runner_spec

    return runner_spec(model)


def test_several_runners_with_vecnormalize_train(local_ray):
    venv = RunnerVecEnv(make_cartpole, count=2, envs_per_runner=2)
    try:
        env = VecNormalize(venv, gamma=0.9)
        model = RecurrentPPO("MlpGruPolicy", env, policy_kwargs=POLICY, **SETTINGS)
        model.learn(256)
        # the reset observations (4) and two iterations of 4 envs x 32 steps
        assert env.obs_rms.count == pytest.approx(1e-4 + 4 + 256)
        assert env.ret_rms.count == pytest.approx(1e-4 + 256)
        assert np.isfinite(env.obs_rms.var).all() and (env.obs_rms.var > 0).all()
        assert model.num_timesteps == 256 and len(model.ep_info_buffer) > 0
    finally:
        venv.close()


class KillAtRollout(BaseCallback):
    """SIGKILLs a process ``delay`` seconds into rollout number ``at`` (while the runners collect)."""

    def __init__(self, pid: int, at: int, delay: float):
        super().__init__()
        self.pid, self.at, self.delay, self.rollouts = pid, at, delay, 0
        self.killer: threading.Timer | None = None

    def _on_rollout_start(self) -> None:
        self.rollouts += 1
        if self.rollouts == self.at:
            self.killer = threading.Timer(self.delay, os.kill, (self.pid, signal.SIGKILL))
            self.killer.start()

    def _on_step(self) -> bool:
        return True


def test_a_runner_killed_in_the_middle_of_a_rollout_is_replaced(local_ray, capfd):
    venv = RunnerVecEnv(lambda: SlowCartPole(0.01), count=2, envs_per_runner=1)
    try:
        model = RecurrentPPO("MlpGruPolicy", venv, policy_kwargs=POLICY, **SETTINGS)
        victim = venv.pids()[1]
        kill = KillAtRollout(victim, at=2, delay=0.1)  # a rollout takes 32 x 10 ms per runner
        model.learn(32 * 2 * 4, callback=kill)  # four iterations
        assert kill.killer is not None and not kill.killer.is_alive()
        assert model.num_timesteps == 256
        assert venv.restarts == 1 and victim not in venv.pids()
        err = capfd.readouterr().err
        assert "runner 1: its process died" in err and "replaced (restart 1)" in err
    finally:
        venv.close()


def test_an_env_that_always_raises_stops_the_run_with_one_message(local_ray):
    venv = RunnerVecEnv(BrokenCartPole, count=1, envs_per_runner=1, max_restarts=1)
    try:
        model = RecurrentPPO("MlpGruPolicy", venv, policy_kwargs=POLICY, **SETTINGS)
        with pytest.raises(RunnerError) as caught:
            model.learn(64)
        message = str(caught.value)
        assert "runner 0 failed 2 times in a row collecting BrokenCartPole" in message
        assert "its env raised RuntimeError: the simulator lost its connection" in message
        assert "\n" not in message
    finally:
        venv.close()


class Numbered(gym.Env):
    """An env whose observation size is the number of runners that made one before it (a counter file)."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, folder: str):
        number = len(os.listdir(folder))
        Path(folder, f"{os.getpid()}").touch()
        self.observation_space = gym.spaces.Box(-1, 1, (1 + number,))

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_runners_whose_spaces_differ_are_refused(local_ray, tmp_path):
    folder = str(tmp_path)
    with pytest.raises(UserInputError, match="runner 1's envs have observations Box"):
        RunnerVecEnv(lambda: Numbered(folder), count=2, envs_per_runner=1)


def test_without_ray_the_message_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(UserInputError, match=r"runners needs Ray, .*pip install 'recurrent_rl\[ray\]'"):
        RunnerVecEnv(make_cartpole, count=1)


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_bad_counts_are_refused(count):
    with pytest.raises(UserInputError, match="count must be a positive integer"):
        RunnerVecEnv(make_cartpole, count=count)


def _logged_columns(model, folder: Path) -> dict[str, list[str]]:
    import csv

    with open(folder / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    return {key: [row[key] for row in rows] for key in rows[0]}


def test_the_iteration_times_and_each_runners_rate_are_logged(local_ray, tmp_path):
    from stable_baselines3.common.logger import configure

    venv = RunnerVecEnv(make_cartpole, count=2, envs_per_runner=2)
    try:
        model = RecurrentPPO("MlpGruPolicy", venv, policy_kwargs=POLICY, **SETTINGS)
        model.set_logger(configure(str(tmp_path), ["csv"]))
        model.learn(256)
        logged = _logged_columns(model, tmp_path)
        # one row per iteration; SB3 dumps before the update, so the update's time shows in the next row
        for key in ("time/collect_s", "runners/steps_per_s/0", "runners/steps_per_s/1"):
            assert len(logged[key]) == 2 and all(float(v) > 0 for v in logged[key]), key
        assert float(logged["time/update_s"][1]) > 0
        assert logged["runners/restarts"] == ["0", "0"]
    finally:
        venv.close()
    local = RecurrentPPO("MlpGruPolicy", make_vec_env(ENV, n_envs=2, seed=0), policy_kwargs=POLICY, **SETTINGS)
    local.set_logger(configure(str(tmp_path / "local"), ["csv"]))
    local.learn(128)
    logged = _logged_columns(local, tmp_path / "local")
    assert float(logged["time/collect_s"][0]) > 0 and float(logged["time/update_s"][-1]) > 0


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA"))]
)
def test_the_learner_may_sit_on_another_device_than_its_runners(local_ray, device):
    venv = RunnerVecEnv(make_cartpole, count=2, envs_per_runner=2)
    try:
        model = RecurrentPPO("MlpGruPolicy", venv, policy_kwargs=POLICY, **{**SETTINGS, "device": device})
        model.learn(256)
        assert model.num_timesteps == 256 and model.rollout_buffer.chunk_start_states[0].actor[0].device.type == device
    finally:
        venv.close()


@pytest.mark.slow
def test_two_runners_reach_the_default_tasks_target(local_ray):
    """The default preset (GRU on CartPole without velocities) with its 8 envs in 2 runners of 4:
    the evaluation at 100k steps reaches what the local path reaches (the preset's target: 475 of
    500; the memoryless ceiling is about 42)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    from recurrent_rl.config.presets import load_preset

    config = load_preset("cartpole-novel-gru")
    venv = RunnerVecEnv(make_cartpole, count=2, envs_per_runner=4)
    try:
        env = VecNormalize(venv, gamma=config.gamma)
        model = RecurrentPPO(env=env, seed=0, **{**config.algorithm_kwargs(), "device": "cpu"})
        model.learn(config.n_timesteps)
        eval_env = VecNormalize(make_vec_env(ENV, n_envs=1, seed=123), training=False, norm_reward=False)
        eval_env.obs_rms = env.obs_rms
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
    finally:
        venv.close()
    assert mean >= 400, mean
