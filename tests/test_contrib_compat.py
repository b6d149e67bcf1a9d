"""sb3-contrib's RecurrentPPO options and contracts, accepted: policy keywords, predict's state, batch sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import RecurrentActorCriticPolicy, RecurrentPPO
from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.contrib import SHARED_WITH_CRITIC_LSTM, SHARED_WITHOUT_SHARED_EXTRACTOR, ContribOptionError
from recurrent_rl.ppo.algorithm import plan_minibatches

ENV = "pomdp/CartPoleNoVel-v1"

# (sb3-contrib's names, this package's names for the same architecture)
EQUIVALENT = [
    (dict(lstm_hidden_size=16, n_lstm_layers=2), dict(memory="lstm", hidden_size=16, num_layers=2, gate_bias=0.0)),
    (dict(enable_critic_lstm=True), dict(memory="lstm", critic_memory="separate", gate_bias=0.0)),
    (
        dict(enable_critic_lstm=False, lstm_hidden_size=8),
        dict(memory="lstm", critic_memory="none", hidden_size=8, gate_bias=0.0),
    ),
    (
        dict(shared_lstm=True, enable_critic_lstm=False),
        dict(memory="lstm", critic_memory="shared", detach_critic_memory=True, gate_bias=0.0),
    ),
    (
        dict(n_lstm_layers=2, lstm_kwargs=dict(dropout=0.5)),
        dict(memory="lstm", num_layers=2, dropout=0.5, gate_bias=0.0),
    ),
]


def make(policy_kwargs, policy="MlpLstmPolicy", **kwargs):
    kwargs.setdefault("n_steps", 16)
    kwargs.setdefault("batch_size", 16)
    return RecurrentPPO(policy, make_vec_env(ENV, n_envs=2, seed=0), seed=0, policy_kwargs=policy_kwargs, **kwargs)


@pytest.mark.parametrize(("contrib", "ours"), EQUIVALENT)
def test_contrib_names_build_the_same_model_as_ours(contrib, ours):
    a, b = make(contrib), make(ours)
    shapes_a = {k: tuple(v.shape) for k, v in a.policy.state_dict().items()}
    shapes_b = {k: tuple(v.shape) for k, v in b.policy.state_dict().items()}
    assert shapes_a == shapes_b
    for key, value in a.policy.state_dict().items():
        assert th.equal(value, b.policy.state_dict()[key]), key
    assert a.policy._get_constructor_parameters() == b.policy._get_constructor_parameters()
    obs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    th.manual_seed(1)
    actions_a, state_a = a.predict(obs, deterministic=False)
    th.manual_seed(1)
    actions_b, state_b = b.predict(obs, deterministic=False)
    np.testing.assert_array_equal(actions_a, actions_b)
    for sa, sb in zip(state_a, state_b):
        np.testing.assert_array_equal(sa, sb)


def test_contrib_names_keep_pytorchs_lstm_initialisation():
    # sb3-contrib's nn.LSTM has PyTorch's init; this package's names default to forget-gate bias 1
    assert make(dict(lstm_hidden_size=8)).policy.gate_bias == 0.0
    assert make(dict(lstm_hidden_size=8, gate_bias=2.0)).policy.gate_bias == 2.0
    assert make(dict(memory="lstm", hidden_size=8)).policy.gate_bias == 1.0


def test_contrib_names_imply_lstm_and_map_the_critic():
    policy = make(dict(lstm_hidden_size=8), policy=RecurrentActorCriticPolicy).policy
    assert (policy.memory, policy.hidden_size, policy.critic_memory) == ("lstm", 8, "separate")
    assert make(dict(enable_critic_lstm=False)).policy.critic_projection is not None
    policy = make(dict(n_lstm_layers=2, lstm_kwargs=dict(dropout=0.25))).policy
    assert policy.actor_memory.rnn.dropout == 0.25 and policy.critic_core.rnn.dropout == 0.25


def value_loss_gradient_on_actor_memory(policy_kwargs) -> float:
    model = make(policy_kwargs)
    model.learn(16)  # one rollout: a filled buffer
    batch = next(model.rollout_buffer.get(None))
    model.policy.set_training_mode(True)
    model.policy.zero_grad()
    values, _, _ = model.policy.evaluate_actions(batch.observations, batch.actions)
    ((batch.returns - values.flatten()) ** 2).mean().backward()
    return float(sum(p.grad.abs().sum() for p in model.policy.actor_memory.parameters() if p.grad is not None))


def test_shared_lstm_detaches_the_critic_from_the_actor_memory():
    # sb3-contrib's shared_lstm: the value loss does not train the actor's LSTM
    assert value_loss_gradient_on_actor_memory(dict(shared_lstm=True, enable_critic_lstm=False)) == 0.0
    # this package's critic_memory="shared": it does
    assert value_loss_gradient_on_actor_memory(dict(memory="lstm", critic_memory="shared")) > 0.0


@pytest.mark.parametrize(
    ("policy_kwargs", "message"),
    [
        (dict(shared_lstm=True), SHARED_WITH_CRITIC_LSTM),
        (dict(shared_lstm=True, enable_critic_lstm=True), SHARED_WITH_CRITIC_LSTM),
        (dict(shared_lstm=True, enable_critic_lstm=False, share_features_extractor=False), "cannot be shared"),
    ],
)
def test_combinations_sb3_contrib_refuses_are_refused_alike(policy_kwargs, message):
    # sb3-contrib refuses these with assert: scripts catching AssertionError keep working
    with pytest.raises(AssertionError, match=message):
        make(policy_kwargs)
    with pytest.raises(UserInputError):
        make(policy_kwargs)
    assert SHARED_WITHOUT_SHARED_EXTRACTOR.endswith("cannot be shared.")


@pytest.mark.parametrize(
    ("policy_kwargs", "policy", "message"),
    [
        (dict(lstm_hidden_size=32, hidden_size=64), "MlpLstmPolicy", "both lstm_hidden_size=32 .* and hidden_size=64"),
        (dict(n_lstm_layers=2, num_layers=1), "MlpLstmPolicy", "both n_lstm_layers=2"),
        (dict(enable_critic_lstm=False, critic_memory="separate"), "MlpLstmPolicy", "both enable_critic_lstm"),
        (dict(lstm_kwargs=dict(dropout=0.1), dropout=0.2), "MlpLstmPolicy", "both lstm_kwargs"),
        (dict(lstm_hidden_size=32), "MlpGruPolicy", "LSTM options, but the policy's memory 'gru' is not an LSTM"),
        (dict(lstm_hidden_size=32, memory="gru"), "MlpLstmPolicy", "memory='gru' is not an LSTM"),
        (dict(lstm_kwargs=dict(bidirectional=True)), "MlpLstmPolicy", r"lstm_kwargs \['bidirectional'\]"),
        (dict(memory="lstm", detach_critic_memory=True), "MlpLstmPolicy", "needs critic_memory='shared'"),
    ],
)
def test_contradicting_options_are_refused(policy_kwargs, policy, message):
    with pytest.raises(ValueError, match=message):
        make(policy_kwargs, policy=policy)


def test_contrib_option_error_is_both_kinds():
    assert issubclass(ContribOptionError, AssertionError) and issubclass(ContribOptionError, ValueError)


def test_predict_takes_and_returns_sb3_contribs_lstm_state():
    # sb3-contrib's predict returns (h, c), each (n_lstm_layers, n_envs, lstm_hidden_size)
    model = make(dict(lstm_hidden_size=8, n_lstm_layers=2))
    obs = np.zeros((2, 4), dtype=np.float32)
    _, state = model.predict(obs)
    assert isinstance(state, tuple) and [s.shape for s in state] == [(2, 2, 8), (2, 2, 8)]
    zeros = (np.zeros((2, 2, 8)), np.zeros((2, 2, 8)))  # what sb3-contrib builds for state=None
    a, _ = model.predict(obs, state=zeros, episode_start=np.ones(2), deterministic=True)
    b, _ = model.predict(obs, state=None, deterministic=True)
    np.testing.assert_array_equal(a, b)
    # one observation, not vectorised: (n_layers, 1, hidden)
    action, state = model.predict(np.zeros(4, dtype=np.float32), state=None, episode_start=np.ones(1))
    assert np.shape(action) == () and [s.shape for s in state] == [(2, 1, 8), (2, 1, 8)]


def test_batch_size_larger_than_the_rollout_is_the_whole_rollout():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: sb3-contrib's behaviour
        model = RecurrentPPO("MlpLstmPolicy", ENV, n_steps=16, seed=0)  # batch_size 128 > 16
    assert model.sequence_length == 16
    model.learn(32)
    assert len(list(model.rollout_buffer.get(model.batch_size))) == 1


def test_batch_size_below_n_steps_cuts_shorter_chunks_with_a_warning():
    with pytest.warns(UserWarning, match="chunks of sequence_length=32 steps"):
        model = RecurrentPPO("MlpLstmPolicy", make_vec_env(ENV, n_envs=2), n_steps=96, batch_size=64, seed=0)
    assert model.sequence_length == 32  # gcd(96, 64)
    model.learn(192)
    sizes = [b.observations.episode_starts.shape for b in model.rollout_buffer.get(model.batch_size)]
    assert sizes == [(32, 2)] * 3  # 6 chunks, 2 per minibatch


def test_plan_minibatches_names_the_exact_sizes():
    assert plan_minibatches(128, 8, 256, None) == (128, [])
    length, notes = plan_minibatches(32, 4, 100, 16)
    assert length == 16
    assert "each holds 6 chunk(s) = 96 steps" in notes[0]
    assert "truncated one of 32 steps" in notes[1] and "[16, 32, 64, 128]" in notes[1]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        plan_minibatches(32, 4, 0, None)


def test_truncated_last_minibatch_runs():
    env = make_vec_env(ENV, n_envs=3)
    with pytest.warns(UserWarning, match="truncated one of 16 steps"):
        model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, sequence_length=8, seed=0)
    model.learn(48)
    steps = [b.actions.shape[0] for b in model.rollout_buffer.get(model.batch_size)]
    assert steps == [32, 16]


def test_contrib_options_survive_save_and_load(tmp_path):
    model = make(dict(shared_lstm=True, enable_critic_lstm=False, n_lstm_layers=2, lstm_kwargs=dict(dropout=0.1)))
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip")
    policy = loaded.policy
    assert (policy.critic_memory, policy.detach_critic_memory, policy.dropout) == ("shared", True, 0.1)


# --- models saved by sb3-contrib's RecurrentPPO ---------------------------------------------


@pytest.mark.parametrize(
    "contrib_kwargs",
    [
        dict(lstm_hidden_size=8, n_lstm_layers=2),  # separate critic LSTM (sb3-contrib's default)
        dict(lstm_hidden_size=8, enable_critic_lstm=False),  # critic: a Linear
        dict(lstm_hidden_size=8, shared_lstm=True, enable_critic_lstm=False),
        {},  # sb3-contrib's default size, 256, which its policy_kwargs do not record
    ],
)
def test_load_converts_an_sb3_contrib_model(tmp_path, contrib_kwargs):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    theirs = sb3_contrib.RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0, policy_kwargs=contrib_kwargs
    )
    theirs.learn(32)  # moved weights and an optimizer state
    theirs.save(tmp_path / "contrib.zip")
    ours = RecurrentPPO.load(tmp_path / "contrib.zip", env=env)
    assert ours.policy.memory == "lstm" and ours.policy.hidden_size == contrib_kwargs.get("lstm_hidden_size", 256)

    rng = np.random.default_rng(0)
    state_theirs = state_ours = None
    starts = np.ones(2)
    for _ in range(20):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        a_theirs, state_theirs = theirs.predict(obs, state_theirs, starts, deterministic=True)
        a_ours, state_ours = ours.predict(obs, state_ours, starts, deterministic=True)
        np.testing.assert_array_equal(a_theirs, a_ours)
        for s_theirs, s_ours in zip(state_theirs, state_ours):
            np.testing.assert_allclose(s_theirs, s_ours, atol=1e-6)
        # sb3-contrib's state passed to ours continues the same way
        a_cross, _ = ours.predict(obs, state_theirs, np.zeros(2), deterministic=True)
        a_same, _ = theirs.predict(obs, state_theirs, np.zeros(2), deterministic=True)
        np.testing.assert_array_equal(a_cross, a_same)
        starts = rng.random(2) < 0.1
    # Adam's moments came along, parameter by parameter
    assert len(ours.policy.optimizer.state_dict()["state"]) == len(list(ours.policy.parameters()))
    ours.learn(32)  # and it trains on
    ours.save(tmp_path / "ours.zip")
    RecurrentPPO.load(tmp_path / "ours.zip")


def test_load_refuses_other_sb3_contrib_models(tmp_path):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    sb3_contrib.QRDQN("MlpPolicy", "CartPole-v1", learning_starts=0, buffer_size=100).save(tmp_path / "qrdqn.zip")
    with pytest.raises(UserInputError, match="not sb3-contrib's RecurrentPPO policy"):
        RecurrentPPO.load(tmp_path / "qrdqn.zip")
