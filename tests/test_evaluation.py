"""Evaluation: memory carried within and reset between episodes, seeding, success rate, report."""

import json

import gymnasium as gym
import numpy as np
import pytest

from recurrent_rl import RecurrentPPO
from recurrent_rl.runs.evaluation import EvalReport, RunError, run_episodes, save_plot, save_report


class RecordingModel:
    """Stands in for a model: records what ``run_episodes`` passes to ``predict``."""

    def __init__(self, env: gym.Env, actions=None):
        self.observation_space, self.action_space = env.observation_space, env.action_space
        self.calls: list[tuple] = []
        self.actions = actions
        self.counter = 0

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        self.counter += 1
        self.calls.append((None if state is None else float(state[0][0, 0, 0]), bool(episode_start[0])))
        action = self.actions(obs, len(self.calls)) if self.actions else self.action_space.sample()
        return np.asarray(action), (np.full((1, 1, 3), float(self.counter), dtype=np.float32),)


def test_memory_is_carried_within_and_reset_between_episodes():
    env = gym.make("pomdp/RepeatFirst-v0")  # fixed-length episodes of 16 steps
    model = RecordingModel(env)
    report = run_episodes(model, env, episodes=3, seed=0)
    assert report.lengths == [16, 16, 16]
    for episode in range(3):
        calls = model.calls[episode * 16 : (episode + 1) * 16]
        assert calls[0] == (None, True)  # a fresh memory, flagged as an episode start
        for t in range(1, 16):
            previous_output = episode * 16 + t  # predict call number that returned the state
            assert calls[t] == (float(previous_output), False)  # the state returned at the step before
    assert report.hidden_states.shape == (16, 3)  # the first episode's top-layer activations


class StateRecorder:
    """A real model's ``predict``, recording the memory state it returns at every step."""

    def __init__(self, model: RecurrentPPO):
        self.model, self.policy = model, model.policy
        self.observation_space, self.action_space = model.observation_space, model.action_space
        self.states: list[np.ndarray] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        action, state = self.model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        self.states.append(np.concatenate([np.asarray(s).ravel() for s in state]))
        return action, state


def test_no_leakage_across_episodes_with_a_real_model():
    """The third of three episodes steps through the same memory states as that episode alone: nothing of
    the first two reaches it. CartPole without velocities: the episodes differ in length and states."""
    env = gym.make("pomdp/CartPoleNoVel-v1")
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu")
    together = StateRecorder(model)
    report = run_episodes(together, env, episodes=3, seed=10)
    alone = StateRecorder(model)
    run_episodes(alone, env, episodes=1, seed=12)  # the third episode on its own
    third = together.states[sum(report.lengths[:2]) :]
    assert len(third) == len(alone.states) == report.lengths[2]
    np.testing.assert_allclose(np.stack(third), np.stack(alone.states), rtol=0, atol=1e-6)
    # the episodes are not all alike, so the comparison above can tell them apart
    first = together.states[: report.lengths[0]]
    assert len(set(report.lengths)) > 1 or not np.allclose(first[: len(third)], third)


def test_same_seed_same_episodes_also_stochastic():
    env = gym.make("pomdp/CartPoleNoVel-v1")
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=16, seed=0)
    a = run_episodes(model, env, episodes=4, deterministic=False, seed=3)
    b = run_episodes(model, env, episodes=4, deterministic=False, seed=3)
    c = run_episodes(model, env, episodes=4, deterministic=False, seed=4)
    assert a.returns == b.returns and a.returns != c.returns


def test_success_rate_comes_from_info_success():
    env = gym.make("pomdp/TMaze-L10-v0")
    # forward to the junction, then always turn left: success exactly when the cue says left
    model = RecordingModel(env, actions=lambda obs, n: 0 if obs[3] < 0.5 else 1)
    report = run_episodes(model, env, episodes=20, seed=0)
    cues_left = []
    for i in range(20):
        obs, _ = env.reset(seed=i)
        cues_left.append(bool(obs[0] > 0.5))
    assert report.successes == cues_left
    assert report.success_rate == pytest.approx(np.mean(cues_left)) and 0 < report.success_rate < 1
    assert report.returns == [1.0 if left else 0.0 for left in cues_left]


def test_report_json_and_table(tmp_path):
    report = EvalReport("env", True, 0, returns=[1.0, 2.0, 4.0], lengths=[3, 4, 5], successes=[True, None, False])
    path = tmp_path / "eval.json"
    save_report(report, path)
    data = json.loads(path.read_text())
    assert data["mean_return"] == pytest.approx(7 / 3) and data["median_return"] == 2.0
    assert data["min_return"] == 1.0 and data["max_return"] == 4.0 and data["episode_lengths"] == [3, 4, 5]
    assert data["success_rate"] == 0.5  # among the episodes that report it
    table = report.table()
    assert "median" in table and "0.50" in table
    assert EvalReport("env", True, 0, [1.0], [1], [None]).to_dict()["success_rate"] is None


def test_plot_without_hidden_states(tmp_path):
    report = EvalReport("env", False, None, returns=[1.0, 1.0], lengths=[3, 4], successes=[None, None])
    save_plot(report, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_spaces_must_match():
    model = RecurrentPPO("MlpGruPolicy", gym.make("pomdp/CartPoleNoVel-v1"), n_steps=16, batch_size=16)
    with pytest.raises(RunError, match="trained on observations"):
        run_episodes(model, gym.make("pomdp/TMaze-L10-v0"), episodes=1)


@pytest.mark.parametrize("memory,width", [("gru", 8), ("mingru", 8), ("transformer", 8)])
def test_hidden_states_are_the_memorys_own_summary_for_every_core(memory, width, tmp_path):
    """The plot's activations come from the memory core (the attention memory: its newest cache
    entry, not the whole window), one (H,) vector per step of the first episode."""
    env = gym.make("pomdp/RepeatFirst-v0")
    kwargs = dict(
        memory=memory, hidden_size=width, memory_kwargs=dict(memory_length=4) if memory == "transformer" else {}
    )
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=16, seed=0, policy_kwargs=kwargs)
    report = run_episodes(model, env, episodes=1, seed=0)
    assert report.hidden_states.shape == (16, width)
    obs, _ = env.reset(seed=0)
    _, state = model.predict(obs, state=None, episode_start=np.ones(1, dtype=bool), deterministic=True)
    np.testing.assert_allclose(report.hidden_states[0], np.asarray(model.policy.actor_memory.state_summary(state))[0])
    save_plot(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
