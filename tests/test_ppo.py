"""RecurrentPPO: minibatches of whole chunks, time-limit bootstrapping, bad input, learning."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from recurrent_rl import NonFiniteLossError, RecurrentPPO
from tests.spaces_env import SpacesEnv


def test_minibatches_are_whole_chunks_of_fixed_size():
    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=3, seed=0)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=20, batch_size=30, sequence_length=5, seed=0)
    _, callback = model._setup_learn(1000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer = model.rollout_buffer
    seen = []
    for batch in buffer.get(30):
        assert batch.observations.episode_starts.shape == (5, 6)
        assert len(batch.actions) == 30 and len(batch.returns) == 30
        for tensor in batch.observations.state.actor + batch.observations.state.critic:
            assert tensor.shape == (1, 6, 64)
        seen.append(batch.old_values.view(5, 6))
    # every step of the rollout appears exactly once, and each chunk column is 5 consecutive steps of one env
    assert len(seen) == 2
    all_values = th.cat(seen, dim=1)  # (5, 12)
    rollout = th.as_tensor(buffer.values)  # (20, 3)
    chunks = {tuple(rollout[k * 5 : (k + 1) * 5, e].tolist()) for k in range(4) for e in range(3)}
    assert {tuple(all_values[:, j].tolist()) for j in range(12)} == chunks
    # the stored memory at chunk k is the state that entered step 5k
    assert len(buffer.chunk_start_states) == 4


def test_one_minibatch_of_all_chunks_is_the_rollout_in_any_order():
    """batch_size = the whole rollout: the minibatch is the stored chunks unshuffled, made once,
    and what the update computes from it equals what it computes from a shuffled order."""
    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=3, seed=0)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=20, batch_size=60, sequence_length=5, seed=0)
    _, callback = model._setup_learn(1000, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer = model.rollout_buffer
    np.random.seed(3)
    (whole,) = list(buffer.get(60))
    assert list(buffer.get(60))[0] is whole  # the same minibatch every epoch
    expected = np.random.RandomState(3)
    expected.permutation(12), expected.permutation(12)  # SB3's draws, one per epoch
    assert np.random.randint(1 << 30) == expected.randint(1 << 30)
    rollout = th.as_tensor(buffer.values)  # (20, 3): chunk k*3 + e is steps 5k..5k+4 of env e
    columns = whole.old_values.view(5, 12)
    for k in range(4):
        for e in range(3):
            assert th.equal(columns[:, k * 3 + e], rollout[k * 5 : (k + 1) * 5, e])

    def loss_and_grads(batch):
        model.policy.zero_grad()
        values, log_prob, entropy = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
        loss = (log_prob * batch.advantages).mean() + ((batch.returns - values.flatten()) ** 2).mean() - entropy.mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.policy.parameters()]

    loss, grads = loss_and_grads(whole)
    shuffled = buffer._minibatch(th.as_tensor(np.random.permutation(12)))
    shuffled_loss, shuffled_grads = loss_and_grads(shuffled)
    assert th.allclose(loss, shuffled_loss, atol=1e-6)
    for a, b in zip(grads, shuffled_grads):
        assert th.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "numpy-kernels"])
def test_rollout_states_can_enter_the_update_on_every_path(monkeypatch, backend):
    """The rollout runs in inference_mode; the states it stores for the update are ordinary
    tensors, so the update can save them for backward, also on torch's own modules (backend
    "torch": nn.GRU / nn.LSTM save h0 for backward) and on the speed backend's NumPy loops (no
    compiled library)."""
    from recurrent_rl.accel import native

    calls = {"gru": 0, "lstm": 0}
    for name, module in (("gru", th.nn.GRU), ("lstm", th.nn.LSTM)):
        original = module.forward

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(module, "forward", counted)
    if backend == "numpy-kernels":
        monkeypatch.setattr(native, "available", lambda: False)
    for memory in ("gru", "lstm"):
        env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=0)
        model = RecurrentPPO(
            "MlpGruPolicy",
            env,
            n_steps=16,
            batch_size=16,
            sequence_length=8,
            n_epochs=1,
            seed=0,
            device="cpu",
            policy_kwargs=dict(memory=memory, hidden_size=8, backend="torch" if backend == "torch" else "cpu-kernels"),
        )
        model.learn(64)
        stored = [t for state in model.rollout_buffer.chunk_start_states for part in state for t in part]
        assert stored and not any(t.is_inference() for t in stored)
    if backend == "torch":  # the update ran torch's own modules
        assert calls["gru"] > 0 and calls["lstm"] > 0, calls
    else:
        assert calls == {"gru": 0, "lstm": 0}, calls


class TimeLimitCounter(gym.Env):
    """Observation = step count; always truncated after 5 steps, never terminated."""

    observation_space = spaces.Box(0, 10, (1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], dtype=np.float32), 1.0, False, self.t >= 5, {}


def test_time_limit_is_bootstrapped_with_the_memory_at_that_step():
    env = make_vec_env(TimeLimitCounter, n_envs=1)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=10, batch_size=10, gamma=0.9, seed=0)
    _, callback = model._setup_learn(100, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    policy, rewards = model.policy, model.rollout_buffer.rewards[:, 0]
    # replay the first episode (obs 0..4) through the critic; then value the terminal obs 5
    state = policy.initial_state(1)
    with th.no_grad():
        for t in range(5):
            obs = th.tensor([[float(t)]])
            _, _, _, state = policy(obs, state, th.tensor([1.0 if t == 0 else 0.0]))
        terminal_value = policy.predict_values(th.tensor([[5.0]]), state, th.zeros(1)).item()
        fresh_value = policy.predict_values(th.tensor([[5.0]]), policy.initial_state(1), th.zeros(1)).item()
    assert abs(terminal_value - fresh_value) > 1e-4, "the memory must matter for this check to mean anything"
    np.testing.assert_allclose(rewards[4], 1.0 + 0.9 * terminal_value, rtol=1e-5)
    np.testing.assert_allclose(rewards[[0, 1, 2, 3, 5, 6, 7, 8]], 1.0)


def test_unsupported_spaces_are_named():
    bad_obs = make_vec_env(lambda: SpacesEnv(spaces.Tuple([spaces.Discrete(2)] * 2), spaces.Discrete(2)))
    with pytest.raises(ValueError, match="does not support the observation space Tuple.*FlattenObservation"):
        RecurrentPPO("MlpGruPolicy", bad_obs)
    bad_act = make_vec_env(lambda: SpacesEnv(spaces.Box(-1, 1, (2,)), spaces.Text(5)))
    with pytest.raises(ValueError, match="does not support the action space Text"):
        RecurrentPPO("MlpGruPolicy", bad_act)
    dict_env = make_vec_env(lambda: SpacesEnv(spaces.Dict({"a": spaces.Box(-1, 1, (2,))}), spaces.Discrete(2)))
    with pytest.raises(ValueError, match="MultiInputGruPolicy"):
        RecurrentPPO("MlpGruPolicy", dict_env)
    with pytest.raises(ValueError, match="unknown policy 'MlpPolicy'"):
        RecurrentPPO("MlpPolicy", "pomdp/CartPoleNoVel-v1")
    with pytest.raises(ValueError, match="critic_memory='both'"):
        RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", policy_kwargs=dict(critic_memory="both"))


def test_sizes_that_do_not_divide_run_with_a_warning():
    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=4)
    with pytest.raises(ValueError, match="sequence_length=7 does not divide n_steps=32"):
        RecurrentPPO("MlpGruPolicy", env, n_steps=32, batch_size=64, sequence_length=7)
    with pytest.raises(ValueError, match="batch_size=4 is smaller than sequence_length=8"):
        RecurrentPPO("MlpGruPolicy", env, n_steps=32, batch_size=4, sequence_length=8)
    # as SB3's PPO: a truncated last minibatch, with the sizes that divide exactly
    with pytest.warns(UserWarning, match=r"truncated one of 28 steps. A batch_size among \[4, 8, 16, 32, 64, 128\]"):
        RecurrentPPO("MlpGruPolicy", env, n_steps=32, batch_size=100, sequence_length=4)


class NaNRewardAfter(gym.Env):
    """CartPole-like env whose reward becomes nan after ``after`` steps in total."""

    observation_space = spaces.Box(-1, 1, (2,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, after: int):
        self.after, self.total = after, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        self.total += 1
        reward = float("nan") if self.total > self.after else float(action)
        return self.observation_space.sample(), reward, False, False, {}


def test_non_finite_loss_stops_training_and_keeps_the_last_good_model(tmp_path):
    env = make_vec_env(lambda: NaNRewardAfter(after=200), n_envs=1)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=32, batch_size=32, seed=0)
    checkpoints = CheckpointCallback(save_freq=32, save_path=str(tmp_path), name_prefix="ckpt")
    with pytest.raises(NonFiniteLossError, match="lower learning_rate.*VecCheckNan"):
        model.learn(2000, callback=checkpoints)
    # parameters are finite and equal to the last checkpoint written before the failure
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    saved = sorted(tmp_path.glob("ckpt_*.zip"), key=lambda p: int(p.stem.split("_")[1]))
    assert saved, "checkpoints before the failure must remain"
    last = RecurrentPPO.load(saved[-1])
    assert all(th.isfinite(p).all() for p in last.policy.parameters())
    model.save(tmp_path / "after.zip")  # saving after the failure saves the last good parameters
    reloaded = RecurrentPPO.load(tmp_path / "after.zip")
    assert all(th.isfinite(p).all() for p in reloaded.policy.parameters())


class NaNObservationAfter(NaNRewardAfter):
    """Observations become nan after ``after`` steps in total."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        reward = 0.0
        if self.total > self.after:
            obs = np.full(2, np.nan, dtype=np.float32)
        return obs, reward, terminated, truncated, info


def test_a_nan_observation_is_named_in_rollouts_and_predict():
    env = make_vec_env(lambda: NaNObservationAfter(after=40), n_envs=2)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, seed=0)
    with pytest.raises(
        ValueError, match=r"rollout: the observation holds nan or inf \(batch rows \[0, 1\]\).*VecCheckNan"
    ):
        model.learn(200)
    obs = np.array([[0.1, np.inf]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"predict\(\): the observation holds nan or inf \(batch rows \[0\]\)"):
        model.predict(obs)


def linear(start: float):
    return lambda progress: start * progress


# rl-baselines3-zoo's tuned CartPoleNoVel-v1 settings (the default preset and the core benchmark)
ZOO_SETTINGS = dict(
    n_steps=32,
    batch_size=256,
    n_epochs=20,
    gae_lambda=0.8,
    gamma=0.98,
    learning_rate=linear(1e-3),
    clip_range=linear(0.2),
)
ZOO_POLICY = dict(ortho_init=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[64], vf=[64]))
LEARNING_BUDGET = 100_000


def evaluate_on_cartpole_novel(model, train_env: VecNormalize) -> float:
    eval_env = VecNormalize(
        make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=1, seed=123), training=False, norm_reward=False
    )
    eval_env.obs_rms = train_env.obs_rms
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=20, deterministic=True)
    return float(mean)


@pytest.mark.slow
def test_gru_learns_cartpole_without_velocities():
    """The memoryless ceiling is about 42 (DESIGN.md); a GRU must clearly pass it.

    Two seeds, judged by their mean: results per seed move with float rounding (the compiled
    layers are built for the CPU they run on), and at this budget single seeds measured here
    ended between 153 and 500 (seeds 0-9, compiled and NumPy layers), most at 500.
    """
    returns = []
    for seed in (0, 1):
        env = VecNormalize(make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=8, seed=seed))
        gru = RecurrentPPO(
            "MlpGruPolicy", env, seed=seed, policy_kwargs=dict(hidden_size=64, **ZOO_POLICY), **ZOO_SETTINGS
        )
        gru.learn(LEARNING_BUDGET)
        returns.append(evaluate_on_cartpole_novel(gru, env))
    print("GRU returns", returns)
    assert np.mean(returns) >= 150, returns


@pytest.mark.slow
def test_mlp_ppo_stays_at_the_memoryless_ceiling_at_the_same_budget():
    """The task needs memory: SB3's MLP PPO with the same settings and budget cannot solve it."""
    env = VecNormalize(make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=8, seed=0))
    mlp = PPO("MlpPolicy", env, seed=0, policy_kwargs=ZOO_POLICY, **ZOO_SETTINGS)
    mlp.learn(LEARNING_BUDGET)
    mlp_return = evaluate_on_cartpole_novel(mlp, env)
    print(f"MLP {mlp_return:.1f}")
    assert mlp_return <= 60, mlp_return  # measured 44.5 (2026-12-06); the GRU test asks for 150
