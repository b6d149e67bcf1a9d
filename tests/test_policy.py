"""The recurrent policy: options, spaces, predict contract, rollout = update, save/load."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from recurrent_rl import RecurrentPPO
from tests.spaces_env import ACTION_SPACES, OBSERVATION_SPACES, SpacesEnv

POLICY_FOR_OBS = {"image": "CnnGruPolicy", "dict": "MultiInputGruPolicy"}


def spaces_vec_env(obs: str, act: str, n_envs: int = 2) -> DummyVecEnv:
    return make_vec_env(lambda: SpacesEnv(OBSERVATION_SPACES[obs], ACTION_SPACES[act]), n_envs=n_envs, seed=0)


@pytest.mark.parametrize(
    "obs,act",
    [(o, "discrete") for o in OBSERVATION_SPACES]
    + [("box", a) for a in ACTION_SPACES if a != "discrete"]
    + [("image", "box"), ("dict", "multidiscrete"), ("multibinary", "multibinary")],
)
def test_every_space_trains(obs, act):
    policy = POLICY_FOR_OBS.get(obs, "MlpGruPolicy")
    kwargs = {"features_extractor_kwargs": {"features_dim": 32}} if obs == "image" else {}
    model = RecurrentPPO(
        policy,
        spaces_vec_env(obs, act),
        n_steps=16,
        batch_size=16,
        sequence_length=8,
        n_epochs=2,
        policy_kwargs=dict(hidden_size=16, **kwargs),
        seed=0,
    )
    model.learn(2048 if obs != "image" else 512)
    assert model.num_timesteps >= 512
    action, state = model.predict(model.env.observation_space.sample(), deterministic=True)
    assert model.action_space.contains(action)
    assert state[0].shape == (1, 1, 16)


@pytest.mark.parametrize(
    "memory,n_state", [("gru", 1), ("lstm", 2), ("rnn", 1), ("mingru", 1), ("minlstm", 1), ("ffm", 1)]
)
@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
def test_policy_options_build_what_they_say(memory, n_state, critic_memory):
    model = RecurrentPPO(
        "MlpGruPolicy",
        "pomdp/CartPoleNoVel-v1",
        n_steps=8,
        batch_size=8,
        policy_kwargs=dict(
            memory=memory, hidden_size=10, num_layers=2, critic_memory=critic_memory, net_arch=dict(pi=[7], vf=[5])
        ),
    )
    policy = model.policy
    from recurrent_rl.nets.ffm import FastForgetfulMemory
    from recurrent_rl.nets.scan import MinRNN

    kinds = {
        "gru": th.nn.GRU,
        "lstm": th.nn.LSTM,
        "rnn": th.nn.RNN,
        "mingru": MinRNN,
        "minlstm": MinRNN,
        "ffm": FastForgetfulMemory,
    }
    assert isinstance(policy.actor_memory.rnn, kinds[memory])
    assert policy.actor_memory.rnn.hidden_size == 10 and policy.actor_memory.rnn.num_layers == 2
    assert (policy.critic_core is not None) == (critic_memory == "separate")
    assert (policy.critic_projection is not None) == (critic_memory == "none")
    assert policy.mlp_extractor.latent_dim_pi == 7 and policy.mlp_extractor.latent_dim_vf == 5
    state = policy.initial_state(3)
    width = 2 * (10 // 4) * 4 if memory == "ffm" else 10  # ffm: real and imaginary parts of m x c traces
    assert len(state.actor) == n_state and all(s.shape == (2, 3, width) for s in state.actor)
    assert len(state.critic) == (n_state if critic_memory == "separate" else 0)
    # every memory parameter is trained
    optimised = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in policy.parameters())


def test_aliases_pick_memory_and_extractor():
    for alias, memory in [("MlpGruPolicy", "gru"), ("MlpLstmPolicy", "lstm"), ("MlpRnnPolicy", "rnn")]:
        model = RecurrentPPO(alias, "pomdp/CartPoleNoVel-v1", n_steps=8, batch_size=8)
        assert model.policy.memory == memory
    model = RecurrentPPO(
        "CnnLstmPolicy",
        make_vec_env(lambda: SpacesEnv(OBSERVATION_SPACES["image"], ACTION_SPACES["discrete"])),
        n_steps=8,
        batch_size=8,
    )
    assert model.policy.memory == "lstm" and type(model.policy.features_extractor).__name__ == "NatureCNN"


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn", "mingru", "minlstm", "ffm"])
@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
@pytest.mark.parametrize("sequence_length", [8, 32])
def test_rollout_log_probs_and_values_equal_the_update(memory, critic_memory, sequence_length):
    # CartPole under a random policy ends episodes every ~20 steps: chunks hold episode starts
    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=4, seed=1)
    model = RecurrentPPO(
        "MlpGruPolicy",
        env,
        n_steps=32,
        batch_size=64,
        sequence_length=sequence_length,
        seed=1,
        policy_kwargs=dict(memory=memory, critic_memory=critic_memory, num_layers=2, hidden_size=16),
    )
    _, callback = model._setup_learn(10_000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    assert model.rollout_buffer.episode_starts[1:].sum() > 0
    n_samples = 0
    with th.no_grad():
        for batch in model.rollout_buffer.get(64):
            values, log_prob, _ = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
            th.testing.assert_close(values.flatten(), batch.old_values, atol=1e-5, rtol=1e-5)
            th.testing.assert_close(log_prob, batch.old_log_prob, atol=1e-5, rtol=1e-5)
            n_samples += len(log_prob)
    assert n_samples == 4 * 32


def test_predict_contract():
    model = RecurrentPPO(
        "MlpLstmPolicy",
        make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=3),
        n_steps=8,
        batch_size=8,
        policy_kwargs=dict(hidden_size=6, num_layers=2),
    )
    obs = model.env.reset()
    actions, state = model.predict(obs)
    assert actions.shape == (3,) and len(state) == 2 and all(s.shape == (2, 3, 6) for s in state)
    assert any(np.abs(s).sum() > 0 for s in state)
    # episode_start resets: a reset env acts as with state=None
    fresh, fresh_state = model.predict(obs, state=None, deterministic=True)
    _, reset_state = model.predict(obs, state=state, episode_start=np.ones(3), deterministic=True)
    for a, b in zip(fresh_state, reset_state):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # a single (non-vectorised) observation
    action, single = model.predict(obs[0])
    assert np.shape(action) == () and single[0].shape == (2, 1, 6)


def test_predict_rejects_a_state_of_the_wrong_shape():
    model = RecurrentPPO("MlpGruPolicy", make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2), n_steps=8, batch_size=8)
    obs = model.env.reset()
    with pytest.raises(ValueError, match=r"needs a tuple of 1 array\(s\) of shape \(1, 2, 64\).*state=None"):
        model.predict(obs, state=(np.zeros((1, 3, 64)),))
    with pytest.raises(ValueError, match="predict\\(\\) got a state"):
        model.predict(obs, state=np.zeros((1, 2, 64)))
    with pytest.raises(ValueError, match="episode_start has 3 entries for 2 observations"):
        model.predict(obs, episode_start=np.zeros(3))


@pytest.mark.parametrize("memory", ["gru", "lstm", "mingru", "minlstm", "ffm"])
def test_save_load_gives_identical_actions(tmp_path, memory):
    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=3)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, seed=3, policy_kwargs=dict(memory=memory))
    model.learn(256)
    model.save(tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip", env=env)
    assert loaded.policy.memory == memory and loaded.sequence_length == 16
    obs = env.reset()
    state_a = state_b = None
    starts = np.ones(2)
    for _ in range(30):
        a, state_a = model.predict(obs, state_a, starts, deterministic=True)
        b, state_b = loaded.predict(obs, state_b, starts, deterministic=True)
        np.testing.assert_array_equal(a, b)
        for sa, sb in zip(state_a, state_b):
            np.testing.assert_array_equal(sa, sb)
        obs, _, starts, _ = env.step(a)
    loaded.learn(64)  # a reloaded model trains on


def test_evaluate_policy_and_vecnormalize_work(tmp_path):
    env = VecNormalize(make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=4))
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, seed=4)
    model.learn(512)
    env.save(str(tmp_path / "vecnormalize.pkl"))
    eval_env = VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=1))
    eval_env.training = False
    returns, lengths = evaluate_policy(model, eval_env, n_eval_episodes=4, return_episode_rewards=True)
    assert len(returns) == 4 and all(r == length for r, length in zip(returns, lengths))  # CartPole: +1 a step


def test_eval_callback_and_progress_bar_work_unchanged(tmp_path):
    from stable_baselines3.common.callbacks import EvalCallback

    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=5)
    eval_env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=1, seed=6)
    model = RecurrentPPO("MlpRnnPolicy", env, n_steps=16, batch_size=32, seed=5, tensorboard_log=str(tmp_path))
    callback = EvalCallback(eval_env, n_eval_episodes=2, eval_freq=64, best_model_save_path=str(tmp_path), verbose=0)
    model.learn(256, callback=callback, progress_bar=True)
    assert callback.last_mean_reward > 0 and (tmp_path / "best_model.zip").exists()
    assert list(tmp_path.glob("RecurrentPPO_1/events.out.tfevents.*"))


def test_default_gate_bias_is_one_for_the_lstm_forget_gate_only():
    """Policy default: LSTM forget gate bias +1 over PyTorch's init, GRU and RNN untouched;
    an explicit value wins and survives save/load."""
    env = make_vec_env("CartPole-v1", n_envs=2)
    biases = {}
    for alias, kwargs in [("MlpLstmPolicy", {}), ("MlpLstmPolicy", {"gate_bias": 0.0}), ("MlpGruPolicy", {})]:
        th.manual_seed(0)
        model = RecurrentPPO(alias, env, n_steps=16, batch_size=32, policy_kwargs=kwargs, seed=0)
        biases[(alias, kwargs.get("gate_bias"))] = model.policy.actor_memory.rnn.bias_ih_l0.detach().clone()
        assert model.policy.gate_bias == (
            1.0 if alias == "MlpLstmPolicy" and not kwargs else kwargs.get("gate_bias", 0.0)
        )
    H = 64
    default, explicit_zero = biases[("MlpLstmPolicy", None)], biases[("MlpLstmPolicy", 0.0)]
    th.testing.assert_close(default[H : 2 * H] - explicit_zero[H : 2 * H], th.ones(H))  # forget gate f
    th.testing.assert_close(default[:H], explicit_zero[:H])  # input gate i untouched
    th.testing.assert_close(default[2 * H :], explicit_zero[2 * H :])
    gru = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32)
    assert gru.policy.gate_bias == 0.0


@pytest.mark.parametrize("act", sorted(ACTION_SPACES))
def test_action_distributions_skip_torchs_argument_checks_but_match_them(act):
    """Validation is off at construction and in log_prob (paid at every step); the log-probs
    equal those of the same distribution with validation on."""
    env = DummyVecEnv([lambda: SpacesEnv(OBSERVATION_SPACES["box"], ACTION_SPACES[act])])
    policy = RecurrentPPO("MlpGruPolicy", env, n_steps=8, batch_size=8, policy_kwargs={"hidden_size": 8}).policy
    latent = th.randn(4, policy.mlp_extractor.latent_dim_pi)
    distribution = policy._get_action_dist_from_latent(latent)
    inner = distribution.distribution
    parts = inner if isinstance(inner, list) else [inner]
    assert parts and all(part._validate_args is False for part in parts)
    actions = distribution.get_actions()
    from stable_baselines3.common.policies import ActorCriticPolicy

    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(True)
    try:  # SB3's own method, torch's checks on
        checked = ActorCriticPolicy._get_action_dist_from_latent(policy, latent)
        th.testing.assert_close(distribution.log_prob(actions), checked.log_prob(actions))
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def test_a_custom_mlp_extractor_is_called_through_its_own_methods():
    """SB3's documented way to change the heads (a custom ``_build_mlp_extractor`` whose module
    has forward_actor / forward_critic and latent dims) keeps working: its methods are called."""
    from recurrent_rl.nets.policies import RecurrentActorCriticPolicy

    calls = []

    class Heads(th.nn.Module):
        def __init__(self, n_in: int):
            super().__init__()
            self.latent_dim_pi, self.latent_dim_vf = 5, 3
            self.pi, self.vf = th.nn.Linear(n_in, 5), th.nn.Linear(n_in, 3)

        def forward_actor(self, x):
            calls.append("actor")
            return th.relu(self.pi(x))

        def forward_critic(self, x):
            calls.append("critic")
            return th.tanh(self.vf(x))

    class Policy(RecurrentActorCriticPolicy):
        def _build_mlp_extractor(self) -> None:
            super()._build_mlp_extractor()
            self.mlp_extractor = Heads(self.hidden_size)

    model = RecurrentPPO(
        Policy,
        "pomdp/CartPoleNoVel-v1",
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        seed=0,
        policy_kwargs=dict(hidden_size=8),
    )
    model.learn(32)
    assert "actor" in calls and "critic" in calls
    model.predict(model.env.observation_space.sample(), deterministic=True)
