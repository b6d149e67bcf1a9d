"""Action masking with memory: MaskableRecurrentPPO, masked distributions, masks in the buffer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import RecurrentPPO
from recurrent_rl.errors import UserInputError
from recurrent_rl.nets.masking import check_action_masks, mask_groups, mask_size
from recurrent_rl.ppo import MaskableRecurrentPPO

pytest.importorskip("sb3_contrib")  # the masked distributions are sb3-contrib's

SPACES = [spaces.Discrete(5), spaces.MultiDiscrete([3, 4]), spaces.MultiBinary(3)]


def mask_for(step: int, space: spaces.Space) -> np.ndarray:
    """A mask that changes with the step and always allows something in every group."""
    rows = []
    for g, n in enumerate(mask_groups(space)):
        allowed = np.array([(step + g + a) % 3 != 0 for a in range(n)])
        allowed[(step + g) % n] = True
        rows.append(allowed)
    return np.concatenate(rows)


def valid(action: np.ndarray, mask: np.ndarray, space: spaces.Space) -> bool:
    """Whether ``action`` is allowed by ``mask`` (sb3-contrib's layout)."""
    action = np.atleast_1d(action).astype(int)
    offsets = np.cumsum([0, *mask_groups(space)])[:-1]
    return all(mask[o + a] for o, a in zip(offsets, action))


class MaskedEnv(gym.Env):
    """Observation: (step / 100, env id); the mask depends on the step; a masked action raises."""

    def __init__(self, action_space: spaces.Space, env_id: int = 0, episode_length: int = 7):
        self.action_space = action_space
        self.observation_space = spaces.Box(-10, 10, (2,), dtype=np.float32)
        self.env_id, self.episode_length, self.t, self.total = env_id, episode_length, 0, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.total / 100.0, self.env_id], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def action_masks(self) -> np.ndarray:
        return mask_for(self.total, self.action_space)

    def step(self, action):
        if not valid(action, self.action_masks(), self.action_space):
            raise AssertionError(f"masked action {action} taken at step {self.total}")
        self.t += 1
        self.total += 1
        reward = float(np.sum(action) % 2)
        return self._obs(), reward, self.t >= self.episode_length, False, {}


def vec(space: spaces.Space, n_envs: int = 2):
    counter = iter(range(100))
    return make_vec_env(lambda: MaskedEnv(space, next(counter)), n_envs=n_envs, seed=0)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
def test_training_never_takes_a_masked_action(space):
    model = MaskableRecurrentPPO("MlpGruPolicy", vec(space), n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)  # MaskedEnv raises on a masked action


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
def test_no_masked_action_in_10000_sampled_steps(space):
    model = MaskableRecurrentPPO("MlpLstmPolicy", vec(space), n_steps=16, seed=0)
    policy, n = model.policy, 1000  # 1000 envs x 10 steps, memory carried
    rng = np.random.default_rng(0)
    state = policy.initial_state(n)
    starts = th.ones(n)
    for step in range(10):
        masks = np.stack([mask_for(int(s), space) for s in rng.integers(0, 50, n)])
        obs = th.as_tensor(rng.normal(size=(n, 2)), dtype=th.float32)
        with th.no_grad():
            actions, _, log_probs, state = policy(obs, state, starts, action_masks=th.as_tensor(masks))
        starts = th.zeros(n)
        actions = actions.numpy().reshape(n, -1)
        assert all(valid(a, m, space) for a, m in zip(actions, masks)), step
        assert th.isfinite(log_probs).all()


def hand_log_prob_and_entropy(logits: np.ndarray, mask: np.ndarray, action: np.ndarray, space: spaces.Space):
    """Masked log-prob and entropy by hand: softmax over the allowed entries of each group, summed."""
    if isinstance(space, spaces.MultiBinary):
        logits = np.stack([np.zeros_like(logits), logits], axis=-1).reshape(-1)  # (off, on) pairs
    log_prob, entropy, start = 0.0, 0.0, 0
    for a, n in zip(np.atleast_1d(action).astype(int), mask_groups(space)):
        z, m = logits[start : start + n].astype(np.float64), mask[start : start + n]
        p = np.where(m, np.exp(z - z[m].max()), 0.0)
        p /= p.sum()
        log_prob += np.log(p[a])
        entropy -= sum(p[m] * np.log(p[m]))
        start += n
    return log_prob, entropy


@pytest.mark.parametrize("space", SPACES, ids=lambda s: type(s).__name__)
def test_masked_log_probs_and_entropy_equal_a_hand_computation(space):
    # learning_rate 0: the update leaves the weights the rollout sampled with
    model = MaskableRecurrentPPO("MlpGruPolicy", vec(space), n_steps=16, batch_size=16, learning_rate=0.0, seed=0)
    model.learn(32)
    batch = next(model.rollout_buffer.get(None))
    policy = model.policy
    policy.set_training_mode(False)
    with th.no_grad():
        actions = batch.actions.long().flatten() if isinstance(space, spaces.Discrete) else batch.actions
        _, log_prob, entropy = policy.evaluate_actions(batch.observations, actions)
        latent_pi, _ = policy._sequence_latents(batch.observations)
        logits = policy.action_net(latent_pi).numpy()
    masks = batch.observations.action_masks.numpy()
    for i in range(len(logits)):
        want_lp, want_h = hand_log_prob_and_entropy(logits[i], masks[i], batch.actions[i].numpy(), space)
        assert log_prob[i].item() == pytest.approx(want_lp, abs=1e-5)
        assert entropy[i].item() == pytest.approx(want_h, abs=1e-5)
    # the log-probs of the update equal those recorded when the actions were sampled
    np.testing.assert_allclose(log_prob.numpy(), batch.old_log_prob.numpy(), atol=1e-5)


@pytest.mark.parametrize("sequence_length", [4, 16])
def test_masks_survive_chunking_and_shuffling(sequence_length):
    space = spaces.Discrete(5)
    model = MaskableRecurrentPPO(
        "MlpGruPolicy", vec(space, 3), n_steps=16, batch_size=16, sequence_length=sequence_length, seed=0
    )
    model.learn(48)
    for batch in model.rollout_buffer.get(16):
        obs = batch.observations.obs.numpy()  # (T*n, 2): the env's step counter / 100, env id
        masks = batch.observations.action_masks.numpy()
        for row, mask in zip(obs, masks):
            np.testing.assert_array_equal(mask, mask_for(round(row[0] * 100), space))


def test_predict_applies_masks_and_checks_them():
    space = spaces.Discrete(4)
    model = MaskableRecurrentPPO("MlpGruPolicy", vec(space), n_steps=16, seed=0)
    obs = np.zeros((2, 2), dtype=np.float32)
    only = np.array([[False, False, True, False], [True, False, False, False]])
    for _ in range(20):
        actions, _ = model.predict(obs, action_masks=only)
        assert actions.tolist() == [2, 0]
    action, state = model.predict(np.zeros(2, dtype=np.float32), action_masks=only[0])
    assert int(action) == 2 and state[0].shape == (1, 1, 64)
    with pytest.raises(UserInputError, match=r"has shape \(3,\), but Discrete\(4\) with 2 env\(s\) needs \(2, 4\)"):
        model.predict(obs, action_masks=np.ones(3, dtype=bool))
    with pytest.raises(UserInputError, match=r"env row\(s\) \[1\] allow no action"):
        model.predict(obs, action_masks=np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool))


def test_bad_masks_from_the_env_are_refused():
    class NoValidAction(MaskedEnv):
        def action_masks(self):
            return np.zeros(mask_size(self.action_space), dtype=bool)

    model = MaskableRecurrentPPO("MlpGruPolicy", make_vec_env(lambda: NoValidAction(spaces.Discrete(3))), n_steps=16)
    with pytest.raises(UserInputError, match="the env's action_masks\\(\\): env row\\(s\\) \\[0\\] allow no action"):
        model.learn(16)


def test_envs_without_masks_and_unmaskable_spaces_are_refused():
    with pytest.raises(UserInputError, match="no action_masks\\(\\) method.*ActionMasker"):
        MaskableRecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1")
    box = make_vec_env(lambda: MaskedEnv(spaces.Box(-1, 1, (2,))))
    with pytest.raises(UserInputError, match="Discrete, MultiDiscrete or MultiBinary action space"):
        MaskableRecurrentPPO("MlpGruPolicy", box)


def test_check_action_masks_layouts():
    assert mask_size(spaces.MultiBinary(3)) == 6 and mask_size(spaces.MultiDiscrete([2, 3])) == 5
    rows = check_action_masks([1, 0, 0, 1, 1], spaces.MultiDiscrete([2, 3]), 1)
    assert rows.dtype == bool and rows.shape == (1, 5)
    with pytest.raises(UserInputError, match="for sub-action 1"):
        check_action_masks([1, 0, 0, 0, 0], spaces.MultiDiscrete([2, 3]), 1)
    with pytest.raises(UserInputError, match=r"\(off, on\) pair"):
        check_action_masks(np.ones(3), spaces.MultiBinary(3), 1)


def test_sb3_contribs_action_masker_and_evaluation_work():
    from sb3_contrib.common.maskable.evaluation import evaluate_policy
    from sb3_contrib.common.wrappers import ActionMasker

    def make():
        env = MaskedEnv(spaces.Discrete(5))
        return ActionMasker(env, lambda e: e.unwrapped.action_masks())

    env = make_vec_env(make, n_envs=2)
    model = MaskableRecurrentPPO("MlpLstmPolicy", env, n_steps=16, seed=0).learn(32)
    # sb3-contrib's masked evaluate_policy passes state, episode_start and action_masks to predict
    mean, _ = evaluate_policy(model, env, n_eval_episodes=4, warn=False)
    assert np.isfinite(mean)


def test_save_and_load_keep_masking(tmp_path):
    model = MaskableRecurrentPPO("MlpGruPolicy", vec(spaces.Discrete(5)), n_steps=16, seed=0)
    model.save(tmp_path / "m.zip")
    loaded = MaskableRecurrentPPO.load(tmp_path / "m.zip", env=vec(spaces.Discrete(5)))
    obs, masks = np.zeros((2, 2), dtype=np.float32), np.stack([mask_for(0, spaces.Discrete(5))] * 2)
    a, _ = model.predict(obs, action_masks=masks, deterministic=True)
    b, _ = loaded.predict(obs, action_masks=masks, deterministic=True)
    np.testing.assert_array_equal(a, b)
    loaded.learn(32)
    # RecurrentPPO itself does not mask
    assert RecurrentPPO.buffer_classes != MaskableRecurrentPPO.buffer_classes


def test_run_episodes_passes_each_steps_mask():
    # MaskedEnv raises on a masked action: 10 stochastic episodes through the evaluation helper
    from recurrent_rl.runs.evaluation import run_episodes

    for space in SPACES:
        model = MaskableRecurrentPPO("MlpGruPolicy", vec(space), n_steps=8, batch_size=16, seed=0)
        report = run_episodes(model, MaskedEnv(space), episodes=10, deterministic=False, seed=0)
        assert report.lengths == [7] * 10
    with pytest.raises(AssertionError, match="masked action"):  # the check is real: unmasked, it fails
        unmasked = RecurrentPPO("MlpGruPolicy", vec(spaces.Discrete(5)), n_steps=8, batch_size=16, seed=0)
        run_episodes(unmasked, MaskedEnv(spaces.Discrete(5)), episodes=10, deterministic=False, seed=0)
