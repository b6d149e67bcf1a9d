"""LeanCategorical: the same distribution as torch's Categorical, in fewer operations."""

import pytest
import torch as th
from torch.distributions import Categorical

from recurrent_rl.accel.distributions import LeanCategorical


@pytest.mark.parametrize("shape", [(8, 2), (5, 3, 4), (6,)])
def test_matches_torch_categorical_values_and_gradients(shape):
    th.manual_seed(0)
    logits = (3 * th.randn(shape)).requires_grad_()
    ours, torchs = LeanCategorical(logits), Categorical(logits=logits)
    actions = torchs.sample()
    for name in ("logits", "probs", "mode"):
        assert th.allclose(getattr(ours, name).float(), getattr(torchs, name).float(), atol=1e-6), name
    assert ours.batch_shape == torchs.batch_shape
    ours_value = ours.log_prob(actions).sum() + ours.entropy().sum()
    torch_value = torchs.log_prob(actions).sum() + torchs.entropy().sum()
    assert th.allclose(ours_value, torch_value, atol=1e-5)
    (ours_grad,) = th.autograd.grad(ours_value, logits)
    (torch_grad,) = th.autograd.grad(torch_value, logits)
    assert th.allclose(ours_grad, torch_grad, atol=1e-5)


def test_log_prob_broadcasts_like_torch():
    logits = th.randn(4, 3)
    values = th.tensor([[0], [1], [2]])  # (3, 1) against batch (4,): broadcast to (3, 4)
    assert th.allclose(LeanCategorical(logits).log_prob(values), Categorical(logits=logits).log_prob(values))


def test_samples_follow_the_probabilities():
    th.manual_seed(0)
    probs = th.tensor([[0.1, 0.2, 0.7], [0.5, 0.0, 0.5]])
    dist = LeanCategorical(probs.log())
    samples = dist.sample((100_000,))
    assert samples.shape == (100_000, 2) and samples.dtype == th.int64
    frequencies = th.stack([(samples == k).float().mean(0) for k in range(3)], dim=1)
    assert th.allclose(frequencies, probs, atol=0.006)
    assert not (samples[:, 1] == 1).any()  # a zero-probability action never comes


def test_sample_reproducible_with_seed_and_in_range():
    logits = th.randn(8, 5)
    th.manual_seed(1)
    first = LeanCategorical(logits).sample()
    th.manual_seed(1)
    assert th.equal(first, LeanCategorical(logits).sample())
    assert first.shape == (8,) and int(first.min()) >= 0 and int(first.max()) <= 4


def test_sample_never_past_the_last_action_when_the_cdf_rounds_below_one(monkeypatch):
    dist = LeanCategorical(th.zeros(3, 4))
    monkeypatch.setattr(th, "rand", lambda shape, **kw: th.full(shape, 1.0 - 1e-9, **kw).nextafter(th.tensor(2.0)))
    assert th.equal(dist.sample(), th.full((3,), 3))


def test_expand_keeps_the_class():
    dist = LeanCategorical(th.randn(3))
    expanded = dist.expand(th.Size([4]))
    assert isinstance(expanded, LeanCategorical) and expanded.sample().shape == (4,)
    assert th.allclose(expanded.probs, dist.probs.expand(4, 3))


def test_rejects_a_scalar():
    with pytest.raises(ValueError, match="at least one-dimensional"):
        LeanCategorical(th.tensor(1.0))


@pytest.mark.parametrize("act", ["discrete", "multidiscrete"])
def test_policy_uses_it_and_log_probs_match_torch(act):
    from stable_baselines3.common.env_util import make_vec_env

    from recurrent_rl import RecurrentPPO
    from tests.spaces_env import ACTION_SPACES, OBSERVATION_SPACES, SpacesEnv

    env = make_vec_env(lambda: SpacesEnv(OBSERVATION_SPACES["box"], ACTION_SPACES[act]), n_envs=3, seed=0)
    policy = RecurrentPPO("MlpGruPolicy", env, n_steps=8, batch_size=8, policy_kwargs=dict(hidden_size=8)).policy
    obs = th.as_tensor(env.reset(), dtype=th.float32)
    with th.no_grad():
        actions, _, log_probs, _ = policy(obs, policy.initial_state(3), th.ones(3))
        latent_pi, _, _ = policy._step_latents(obs, policy.initial_state(3), th.ones(3))
        logits = policy.action_net(latent_pi)
    inner = policy.action_dist.distribution
    assert all(isinstance(d, LeanCategorical) for d in (inner if isinstance(inner, list) else [inner]))
    if act == "discrete":
        expected = Categorical(logits=logits).log_prob(actions)
    else:
        parts = th.split(logits, list(policy.action_dist.action_dims), dim=1)
        expected = sum(Categorical(logits=p).log_prob(a) for p, a in zip(parts, actions.unbind(1)))
    assert th.allclose(log_probs, expected, atol=1e-6)
