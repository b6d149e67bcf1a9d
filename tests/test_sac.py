"""RecurrentSAC and its sequence replay buffer: windows inside episodes, burn-in, stored states,
sequence = steps, save/load and resume, bad input, and learning on PendulumNoVel."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from recurrent_rl import RecurrentSAC
from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.memory import MEMORIES, mask_state
from recurrent_rl.sac.buffers import SequenceReplayBuffer, StepExtras

PENDULUM = "pomdp/PendulumNoVel-v1"
SMALL = dict(net_arch=[32, 32])


# --- the buffer -----------------------------------------------------------------------------


def _filled_buffer(steps: int, n_envs: int = 2, size: int = 120, burn_in: int = 3, seed: int = 0):
    """A buffer whose observations say where they come from: (episode id, step in episode + 1),
    zeros nowhere; the action is 0.01 * that step; episodes of random lengths, some ending by a
    time limit; ``steps`` adds (the ring wraps when steps * n_envs > size)."""
    rng = np.random.default_rng(seed)
    space = spaces.Box(-1e6, 1e6, (2,), np.float32)
    buffer = SequenceReplayBuffer(
        size, space, spaces.Box(-1, 1, (1,), np.float32), "cpu", n_envs=n_envs, sequence_length=8, burn_in=burn_in
    )
    episode = np.arange(1, n_envs + 1)
    step = np.zeros(n_envs, dtype=int)
    length = rng.integers(1, 14, size=n_envs)
    starts = np.ones(n_envs, dtype=bool)
    for _ in range(steps):
        obs = np.stack([episode, step + 1], axis=1).astype(np.float32)
        done = step + 1 >= length
        timeout = done & (rng.random(n_envs) < 0.5)
        next_obs = np.stack([episode, step + 2], axis=1).astype(np.float32)
        infos = [{"TimeLimit.truncated": bool(t)} for t in timeout]
        buffer.stage(StepExtras(starts.copy(), ()))
        buffer.add(obs, next_obs, 0.01 * (step + 1)[:, None], -(step + 1.0), done, infos)
        starts = done
        step = np.where(done, 0, step + 1)
        episode = np.where(done, episode + n_envs, episode)
        length = np.where(done, rng.integers(1, 14, size=n_envs), length)
    return buffer


def test_sampled_windows_never_cross_an_episode_boundary():
    buffer = _filled_buffer(steps=150)  # wraps: 300 steps into 60 per env
    B = buffer.burn_in
    np.random.seed(0)
    seen_anchors = set()
    for _ in range(40):
        data = buffer.sample(64)
        obs = data.observations.numpy()  # (L+1, W, 2)
        mask, starts = data.mask.numpy(), data.episode_starts.numpy()
        prev_actions, actions = data.prev_actions.numpy()[..., 0], data.actions.numpy()[..., 0]
        for w in range(obs.shape[1]):
            rows = np.flatnonzero(obs[:, w, 0] != 0)
            assert rows.size and (np.diff(rows) == 1).all(), "valid rows are one run, padding around it"
            episode, steps = obs[rows, w, 0], obs[rows, w, 1]
            assert (episode == episode[0]).all(), "a window holds one episode"
            assert (np.diff(steps) == 1).all(), "consecutive steps of it"
            first, last = rows[0], rows[-1]
            assert B in rows[:-1], "the anchor row holds a stored step"
            seen_anchors.add((episode[0], steps[rows == B][0]))
            # the episode starts inside the window exactly where it is flagged
            assert starts[:, w].sum() == (steps[0] == 1)
            assert starts[first, w] == (steps[0] == 1)
            assert (starts[:first, w] == 0).all()
            # the loss rows are the valid rows from the anchor on; the last input row is the next observation
            assert (np.flatnonzero(mask[:, w]) == np.arange(B, last)).all()
            # previous actions: the step before in the same episode, zero at its start
            expected_prev = np.where(steps == 1, 0.0, 0.01 * (steps - 1))
            assert np.allclose(prev_actions[rows, w], expected_prev)
            assert np.allclose(actions[mask[:, w] > 0, w], 0.01 * steps[:-1][mask[rows[:-1], w] > 0])
    # every stored step that can anchor a window shows up (2560 draws from at most 120)
    steps, envs = np.meshgrid(np.arange(buffer.buffer_size), np.arange(2), indexing="ij")
    assert len(seen_anchors) == buffer.valid_anchors(steps.ravel(), envs.ravel()).sum()


def test_the_oldest_stored_step_anchors_only_an_episode_start():
    buffer = _filled_buffer(steps=100, n_envs=1, size=60, burn_in=0)
    oldest = buffer.pos
    valid = buffer.valid_anchors(np.array([oldest]), np.array([0]))[0]
    assert valid == (buffer.episode_steps[oldest, 0] == 0)


# --- collection and stored states ---------------------------------------------------------


def _model(memory: str = "gru", **kwargs) -> RecurrentSAC:
    options = dict(
        memory=memory,
        hidden_size=16,
        sequence_length=8,
        burn_in=3,
        batch_size=8,
        learning_starts=64,
        buffer_size=2000,
        seed=0,
        policy_kwargs=SMALL,
    )
    options.update(kwargs)
    env = options.pop("env", None) or make_vec_env(PENDULUM, n_envs=2, seed=0)
    return RecurrentSAC("MlpPolicy", env, **options)


@pytest.mark.parametrize("critic_memory", ["separate", "shared"])
def test_stored_states_are_the_memory_at_that_step(critic_memory):
    # no update (learning_starts beyond the run): the networks are those that collected
    model = _model(stored_states=True, critic_memory=critic_memory, learning_starts=10_000, prev_reward=True)
    model.learn(460)  # two envs, episodes of 200 steps: several episode starts per column
    buffer, policy = model.replay_buffer, model.policy
    encoders = [policy.actor.encoder] + ([policy.critic.encoder] if critic_memory == "separate" else [])
    for env in range(2):
        states = [enc.core.initial_state(1) for enc in encoders]
        for t in range(buffer.pos):
            start = th.tensor([float(buffer.episode_steps[t, env] == 0)])
            keep = 1.0 - start
            obs = th.as_tensor(buffer.observations[t, env : env + 1])
            prev_a = th.as_tensor(buffer.actions[t - 1, env : env + 1]) * keep if t else th.zeros(1, 1)
            prev_r = th.as_tensor(buffer.rewards[t - 1, env : env + 1]) * keep if t else th.zeros(1)
            stored = [th.as_tensor(s[t, env]).unsqueeze(1) for s in buffer.states]  # each (layers, 1, width)
            expected = [leaf for state in states for leaf in mask_state(state, keep)]
            assert len(stored) == len(expected)
            for got, want in zip(stored, expected):
                assert th.allclose(got, want, atol=1e-6), (env, t)
            with th.no_grad():
                states = [enc.step(obs, s, start, prev_a, prev_r)[1] for enc, s in zip(encoders, states)]


# --- the update -----------------------------------------------------------------------------


@pytest.mark.parametrize("memory", MEMORIES)
def test_sequence_equals_steps_in_the_update(memory):
    """The memory outputs the update uses (burn-in, then the trained rows in one call) equal
    stepping the memory row by row from the window's start state, for every memory."""
    model = _model(memory, stored_states=True, prev_reward=True)
    model.learn(200)
    np.random.seed(1)
    data = model.replay_buffer.sample(8)
    actor_start, critic_start = model._start_states(data, 8)
    for encoder, start in ((model.policy.actor.encoder, actor_start), (model.policy.critic.encoder, critic_start)):
        encoder.eval()
        with th.no_grad():
            seq = encoder.sequence(
                data.observations, start, data.episode_starts, data.prev_actions, data.prev_rewards, burn_in=3
            )
            state, steps = start, []
            for t in range(data.observations.shape[0]):
                out, state = encoder.step(
                    data.observations[t], state, data.episode_starts[t], data.prev_actions[t], data.prev_rewards[t]
                )
                steps.append(out)
        assert th.allclose(seq, th.stack(steps[3:]), atol=1e-5), memory


def _losses(model: RecurrentSAC, data) -> tuple[th.Tensor, th.Tensor]:
    outs = model.memory_outputs(data)
    th.manual_seed(0)
    actions_pi, log_prob = model.policy.actor.action_log_prob(outs["actor"])
    ent = th.tensor(0.1)
    critic_loss, _ = model.critic_loss(data, outs, actions_pi, log_prob, ent)
    return critic_loss, model.actor_loss(data, outs, actions_pi, log_prob, ent)


def test_burn_in_rows_add_nothing_to_any_loss_or_gradient():
    model = _model(burn_in=3)
    model.learn(300)
    np.random.seed(2)
    data = model.replay_buffer.sample(8)
    B = model.burn_in
    observations = data.observations.clone().requires_grad_(True)
    data = data._replace(observations=observations)
    critic_loss, actor_loss = _losses(model, data)
    (critic_loss + actor_loss).backward()
    assert observations.grad is not None
    assert (observations.grad[:B] == 0).all(), "no gradient reaches the burn-in rows"
    assert observations.grad[B:].abs().sum() > 0
    # the burn-in rows' transitions (rewards, terminations, actions) never enter a loss
    changed = data._replace(
        observations=data.observations.detach(),
        rewards=data.rewards.clone().index_fill_(0, th.arange(B), 1e3),
        dones=data.dones.clone().index_fill_(0, th.arange(B), 1.0),
        actions=data.actions.clone().index_fill_(0, th.arange(B), 0.9),
    )
    again = _losses(model, changed)
    assert th.equal(critic_loss.detach(), again[0].detach()) and th.equal(actor_loss.detach(), again[1].detach())


def test_learn_records_losses_entropy_q_values_and_memory_norms():
    model = _model()
    model.learn(200)
    logged = model.logger.name_to_value
    for key in (
        "train/critic_loss",
        "train/actor_loss",
        "train/ent_coef",
        "train/ent_coef_loss",
        "train/q_values",
        "train/entropy",
        "memory/actor_output_norm",
        "memory/critic_output_norm",
    ):
        assert key in logged and np.isfinite(logged[key]), key


# --- acting, saving, loading ----------------------------------------------------------------


def test_predict_carries_the_memory_and_the_previous_action():
    model = _model()
    model.learn(100)
    obs = model.env.reset()
    actions, state = model.predict(obs, deterministic=True)
    assert actions.shape == (2, 1) and [s.shape for s in state] == [(1, 2, 16), (2, 1)]
    again, _ = model.predict(obs, state=state, episode_start=np.zeros(2), deterministic=True)
    fresh, _ = model.predict(obs, state=state, episode_start=np.ones(2), deterministic=True)
    assert np.allclose(fresh, actions) and not np.allclose(again, actions)
    mean, _ = evaluate_policy(model, make_vec_env(PENDULUM, n_envs=1, seed=3), n_eval_episodes=1)
    assert np.isfinite(mean)
    with pytest.raises(UserInputError, match="state"):
        model.predict(obs, state=(state[0],), episode_start=np.zeros(2))


def test_prev_reward_needs_the_reward_in_predict():
    model = _model(prev_reward=True)
    obs = model.env.reset()
    _, state = model.predict(obs)
    with pytest.raises(UserInputError, match="reward="):
        model.predict(obs, state=state, episode_start=np.zeros(2))
    model.predict(obs, state=state, episode_start=np.zeros(2), reward=np.ones(2))


def test_save_load_gives_the_same_actions_and_with_the_buffer_the_same_next_update(tmp_path):
    model = _model(stored_states=True, prev_reward=True)
    model.learn(200)
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = RecurrentSAC.load(tmp_path / "model.zip", env=make_vec_env(PENDULUM, n_envs=2, seed=0))
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")

    obs = model.env.reset()
    state = None
    for _ in range(5):
        a, state_a = model.predict(obs, state=state, episode_start=np.zeros(2), deterministic=True, reward=np.ones(2))
        b, _ = loaded.predict(obs, state=state, episode_start=np.zeros(2), deterministic=True, reward=np.ones(2))
        assert np.allclose(a, b, atol=1e-6)
        state = state_a

    for m in (model, loaded):
        m._logger = copy.copy(model.logger)
        np.random.seed(5)
        th.manual_seed(5)
        m.train(gradient_steps=2, batch_size=8)
    for p, q in zip(model.policy.parameters(), loaded.policy.parameters()):
        assert th.allclose(p, q, atol=1e-6)
    assert th.allclose(model.log_ent_coef, loaded.log_ent_coef)


def test_a_buffer_saved_with_other_windows_is_refused(tmp_path):
    model = _model()
    model.learn(100)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = _model(sequence_length=10)
    with pytest.raises(UserInputError, match="sequence_length=8"):
        other.load_replay_buffer(tmp_path / "buffer.pkl")


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(sequence_length=40, buffer_size=60), "does not fit the replay buffer"),
        (dict(sequence_length=8, burn_in=8), "burn_in=8 must be smaller than sequence_length=8"),
        (dict(burn_in=-1), "burn_in must be an integer >= 0"),
        (dict(sequence_length=0), "sequence_length must be an integer >= 1"),
        (dict(critic_memory="none"), "critic_memory='none' is not valid"),
        (dict(memory="gruu"), "not a memory type"),
        (dict(use_sde=True), "gSDE"),
        (dict(env="pomdp/CartPoleNoVel-v1"), "continuous (Box) action space"),
    ],
)
def test_bad_input_is_refused_with_one_line_before_any_work(kwargs, words, monkeypatch):
    built = []
    monkeypatch.setattr(RecurrentSAC, "_setup_model", lambda self: built.append(self))
    with pytest.raises(UserInputError) as error:
        _model(**kwargs)
    message = str(error.value)
    assert words in message and "\n" not in message
    assert built == [], "refused before the buffer and the networks are built"


def test_dict_observations_are_refused_with_the_fix():
    class DictEnv(gym.Env):
        observation_space = spaces.Dict({"x": spaces.Box(-1, 1, (2,))})
        action_space = spaces.Box(-1, 1, (1,))

    with pytest.raises(UserInputError, match="FlattenObservation"):
        RecurrentSAC("MlpPolicy", DictEnv(), buffer_size=100, sequence_length=8)


# --- learning -------------------------------------------------------------------------------


def _pendulum_return(model, recurrent: bool, episodes: int = 10) -> float:
    env = make_vec_env(PENDULUM, n_envs=episodes, seed=1234)
    obs, state = env.reset(), None
    starts, totals, done = np.ones(episodes, bool), np.zeros(episodes), np.zeros(episodes, bool)
    while not done.all():
        if recurrent:
            actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        else:
            actions, _ = model.predict(obs, deterministic=True)
        obs, rewards, starts, _ = env.step(actions)
        totals += np.where(done, 0.0, rewards)
        done |= starts
    return float(totals.mean())


@pytest.mark.slow
def test_recurrent_sac_learns_pendulum_without_velocity_where_memoryless_sac_cannot():
    """15k steps, one seed: RecurrentSAC swings up and balances from angles alone (the optimum is
    about -150, a random policy about -1200); SB3's SAC on the same observations, same settings,
    cannot tell which way the pendulum moves."""
    settings = dict(learning_rate=1e-3, gamma=0.9, learning_starts=1000, train_freq=2, gradient_steps=1, seed=0)
    recurrent = RecurrentSAC(
        "MlpPolicy",
        make_vec_env(PENDULUM, n_envs=1, seed=0),
        sequence_length=24,
        burn_in=4,
        batch_size=32,
        policy_kwargs=dict(net_arch=[128, 128]),
        **settings,
    )
    recurrent.learn(15_000)
    memoryless = SAC(
        "MlpPolicy", make_vec_env(PENDULUM, n_envs=1, seed=0), policy_kwargs=dict(net_arch=[128, 128]), **settings
    )
    memoryless.learn(15_000)
    with_memory, without = _pendulum_return(recurrent, True), _pendulum_return(memoryless, False)
    assert with_memory > -300, with_memory
    assert without < with_memory - 200, (without, with_memory)
