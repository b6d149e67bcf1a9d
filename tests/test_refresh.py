"""Fresh states for the update: state_refresh and burn-in (recurrent_rl.ppo.refresh, the buffer's windows)."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import RecurrentPPO
from recurrent_rl.nets.memory import state_leaves
from recurrent_rl.ppo.refresh import refresh_chunk_states
from recurrent_rl.sequences import map_obs, window_rows, window_starts
from recurrent_rl.types import RecurrentState, SequenceObs

ENV = "pomdp/CartPoleNoVel-v1"  # a random policy ends episodes every ~20 steps: chunks hold episode starts
MEMORIES = ["gru", "lstm", "mingru", "ffm", "transformer"]


def tiny(memory="gru", critic_memory="separate", backend="auto", n_envs=3, **kwargs):
    policy_kwargs = dict(memory=memory, hidden_size=8, critic_memory=critic_memory, backend=backend)
    if memory == "transformer":
        policy_kwargs["memory_kwargs"] = {"memory_length": 4}
    settings = dict(n_steps=16, batch_size=24, sequence_length=4, n_epochs=3, seed=0)
    settings.update(kwargs)
    return RecurrentPPO(
        "MlpGruPolicy", make_vec_env(ENV, n_envs=n_envs, seed=0), policy_kwargs=policy_kwargs, **settings
    )


def collect(model, rollouts=2):
    """Rollouts without an update in between: every stored state comes from the same parameters."""
    _, callback = model._setup_learn(10_000, None)
    for _ in range(rollouts):
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def leaves(state):
    return state_leaves(state)


def test_window_rows_hold_the_context_before_each_chunk():
    S, E, T, k = 12, 2, 4, 3
    array = np.arange((k + S) * E).reshape(k + S, E) - k * E  # rollout step s of env e: s * E + e
    windows = window_rows(array, T, k)  # (k+T, K*E)
    assert windows.shape == (k + T, 3 * E)
    for c, start in enumerate(window_starts(S, T, k)):
        for e in range(E):
            assert windows[:, c * E + e].tolist() == [(start + t) * E + e for t in range(k + T)]
    assert window_starts(S, T, 0) == [0, 4, 8]


@pytest.mark.parametrize("memory", MEMORIES)
@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
@pytest.mark.parametrize("burn_in", [0, 3, 6])
def test_refreshed_states_equal_the_stored_ones_with_unchanged_parameters(memory, critic_memory, burn_in):
    model = tiny(memory, critic_memory, burn_in=burn_in, state_refresh=True)
    buffer = collect(model)
    assert buffer.episode_starts[1:].sum() > 0
    chunks = buffer._make_chunks()
    refreshed = refresh_chunk_states(model.policy, buffer, chunks)
    stored = leaves(chunks["state"])
    n_tensors = len(model.policy.actor_memory.state_shapes(1)) * (2 if critic_memory == "separate" else 1)
    assert len(stored) == len(leaves(refreshed)) == n_tensors
    for a, b in zip(stored, leaves(refreshed)):
        assert a.shape == b.shape
        th.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "cpu-kernels"])
def test_refresh_changes_the_states_once_the_parameters_change(backend):
    model = tiny("gru", backend=backend, state_refresh=True)
    buffer = collect(model)
    chunks = buffer._make_chunks()
    stored = [t.clone() for t in leaves(chunks["state"])]
    with th.no_grad():
        for p in model.policy.actor_memory.parameters():
            p.add_(0.3 * th.randn_like(p))
    refreshed = leaves(refresh_chunk_states(model.policy, buffer, chunks))
    E = buffer.n_envs
    # the first chunk of each env row keeps its stored state; every later one is recomputed
    th.testing.assert_close(refreshed[0][:, :E], stored[0][:, :E], atol=0, rtol=0)
    assert not th.allclose(refreshed[0][:, E:], stored[0][:, E:], atol=1e-3)
    th.testing.assert_close(refreshed[1], stored[1], atol=0, rtol=0)  # the critic's memory did not change


def test_the_update_uses_refreshed_states_from_the_second_epoch():
    model = tiny("gru", state_refresh=True, batch_size=48)  # one minibatch of all chunks
    buffer = collect(model)
    (first,) = list(buffer.get(48))
    with th.no_grad():
        for p in model.policy.actor_memory.parameters():
            p.add_(0.3 * th.randn_like(p))
    (second,) = list(buffer.get(48))
    expected = refresh_chunk_states(model.policy, buffer, buffer._chunks)
    for a, b in zip(leaves(second.observations.state), leaves(expected)):
        th.testing.assert_close(a, b, atol=0, rtol=0)
    assert not th.equal(first.observations.state.actor[0], second.observations.state.actor[0])


@pytest.mark.parametrize("memory", MEMORIES)
@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
@pytest.mark.parametrize("burn_in,gradient", [(3, False), (6, True), (16, False)])
def test_with_burn_in_the_update_sees_what_the_rollout_saw(memory, critic_memory, burn_in, gradient):
    """With the parameters of the rollouts, values and log-probabilities computed through the
    windows (context from this rollout and the one before) equal the rollout's, step by step."""
    model = tiny(memory, critic_memory, burn_in=burn_in, burn_in_gradient=gradient, state_refresh=True)
    buffer = collect(model)
    n = 0
    with th.no_grad():
        for _ in range(2):  # the second epoch refreshes
            for batch in buffer.get(24):
                seq = batch.observations
                assert seq.burn_in == burn_in and seq.episode_starts.shape == (burn_in + 4, 6)
                values, log_prob, _ = model.policy.evaluate_actions(seq, batch.actions.long().flatten())
                th.testing.assert_close(values.flatten(), batch.old_values, atol=1e-5, rtol=1e-5)
                th.testing.assert_close(log_prob, batch.old_log_prob, atol=1e-5, rtol=1e-5)
                n += len(log_prob)
    assert n == 2 * 3 * 16


def ppo_loss(model, batch):
    """SB3's PPO loss terms for a minibatch (clip 0.2), with their sum."""
    values, log_prob, entropy = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
    advantages = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    ratio = th.exp(log_prob - batch.old_log_prob)
    policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 0.8, 1.2)).mean()
    value_loss = ((batch.returns - values.flatten()) ** 2).mean()
    entropy_loss = -entropy.mean()
    return policy_loss + 0.5 * value_loss + 0.01 * entropy_loss, (policy_loss, value_loss, entropy_loss)


def obs_with_grad(batch):
    obs = batch.observations.obs.clone().requires_grad_(True)
    return batch._replace(observations=batch.observations._replace(obs=obs)), obs


@pytest.mark.parametrize("memory", ["gru", "lstm", "ffm", "transformer"])
@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
def test_burn_in_steps_carry_no_loss_and_no_gradient(memory, critic_memory):
    k, T = 3, 4
    model = tiny(memory, critic_memory, burn_in=k)
    buffer = collect(model)
    (batch,) = list(buffer.get(48))
    n = batch.observations.episode_starts.shape[1]
    with th.no_grad():  # perturb the parameters: the update's, not the rollout's
        for p in model.policy.parameters():
            p.add_(0.05 * th.randn_like(p))
    batch, obs = obs_with_grad(batch)
    params = list(model.policy.parameters())
    loss, terms = ppo_loss(model, batch)
    grads = th.autograd.grad(loss, [obs, *params], allow_unused=True)
    # no gradient reaches the burn-in steps' observations, and every trained step's does
    assert th.count_nonzero(grads[0][: k * n]) == 0
    assert th.count_nonzero(grads[0][k * n :].abs().sum(-1)) == T * n
    # each loss term is what the same chunks give when they start from the burned-in state as a constant
    seq = batch.observations
    with th.no_grad():
        warm = SequenceObs(seq.obs[: k * n], seq.state, seq.episode_starts[:k])
        state = model.policy.memory_state_after(warm)
    obs2 = seq.obs[k * n :].detach().clone().requires_grad_(True)
    plain = batch._replace(observations=SequenceObs(obs2, RecurrentState(*state), seq.episode_starts[k:]))
    loss2, terms2 = ppo_loss(model, plain)
    for a, b in zip(terms, terms2):
        th.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    grads2 = th.autograd.grad(loss2, [obs2, *params], allow_unused=True)
    th.testing.assert_close(grads[0][k * n :], grads2[0], atol=1e-6, rtol=1e-5)
    for a, b in zip(grads[1:], grads2[1:]):
        if a is None or b is None:
            assert a is None and b is None
        else:
            th.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_burn_in_gradient_reaches_the_context_and_leaves_the_loss_unchanged():
    k = 3
    model = tiny("gru", burn_in=k, burn_in_gradient=True)
    buffer = collect(model)
    (batch,) = list(buffer.get(48))
    n = batch.observations.episode_starts.shape[1]
    batch, obs = obs_with_grad(batch)
    loss, terms = ppo_loss(model, batch)
    (grad,) = th.autograd.grad(loss, [obs])
    assert th.count_nonzero(grad[: k * n].abs().sum(-1)) > n  # the context's observations now get gradient
    detached = batch._replace(observations=batch.observations._replace(burn_in_gradient=False))
    _, terms_detached = ppo_loss(model, detached)
    for a, b in zip(terms, terms_detached):
        th.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("options", [dict(state_refresh=True), dict(burn_in=8), dict(burn_in=8, burn_in_gradient=True)])
def test_learn_runs_and_saves_the_options(tmp_path, options):
    from recurrent_rl.export.safe import load_safe, save_safe

    model = tiny("gru", **options)
    model.learn(200)
    model.save(tmp_path / "model.zip")
    save_safe(model, tmp_path / "safe")
    for loaded in (RecurrentPPO.load(tmp_path / "model.zip"), load_safe(tmp_path / "safe")):
        for name in ("state_refresh", "burn_in", "burn_in_gradient"):
            assert getattr(loaded, name) == getattr(model, name, None), name
        assert loaded.rollout_buffer.burn_in == model.burn_in
        assert (loaded.rollout_buffer.refresher is not None) == model.state_refresh


def test_a_safe_copy_without_the_options_loads_with_the_defaults(tmp_path):
    import json

    from recurrent_rl.export.safe import load_safe, save_safe

    save_safe(tiny("gru"), tmp_path)
    config = json.loads((tmp_path / "model.json").read_text())
    for name in ("state_refresh", "burn_in", "burn_in_gradient"):
        del config["hyperparameters"][name]
    (tmp_path / "model.json").write_text(json.dumps(config))
    loaded = load_safe(tmp_path)
    assert (loaded.state_refresh, loaded.burn_in, loaded.burn_in_gradient) == (False, 0, False)


@pytest.mark.parametrize(
    "entry,message",
    [
        (dict(burn_in=17), r"hyperparameters\.burn_in\) must be"),
        (dict(burn_in="8"), r"hyperparameters\.burn_in\) must be an integer"),
        (dict(state_refresh=1), r"hyperparameters\.state_refresh"),
        (dict(burn_in_gradient=True), r"burn_in_gradient is true with burn_in 0"),
    ],
)
def test_a_safe_copy_with_bad_options_is_refused_before_anything_is_built(tmp_path, entry, message):
    import json

    from recurrent_rl.errors import UserInputError
    from recurrent_rl.export.safe import load_safe, save_safe

    save_safe(tiny("gru"), tmp_path)
    config = json.loads((tmp_path / "model.json").read_text())
    config["hyperparameters"].update(entry)
    (tmp_path / "model.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match=message):
        load_safe(tmp_path)


def test_masked_training_with_burn_in_sees_what_the_rollout_saw():
    from recurrent_rl import MaskableRecurrentPPO

    env = make_vec_env("pomdp/VisitAll-v0", n_envs=2, seed=0)
    model = MaskableRecurrentPPO(
        "MlpGruPolicy", env, n_steps=16, batch_size=16, sequence_length=4, burn_in=5, state_refresh=True, seed=0
    )
    buffer = collect(model)
    with th.no_grad():
        for batch in buffer.get(16):
            seq = batch.observations
            assert seq.action_masks.shape[0] == 4 * seq.episode_starts.shape[1] and seq.burn_in == 5
            values, log_prob, _ = model.policy.evaluate_actions(seq, batch.actions.long().flatten())
            th.testing.assert_close(log_prob, batch.old_log_prob, atol=1e-5, rtol=1e-5)
    model.learn(64)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(burn_in=17), r"burn_in must be an integer from 0 to n_steps=16"),
        (dict(burn_in=-1), r"burn_in must be an integer from 0 to n_steps=16"),
        (dict(burn_in=2.5), r"burn_in must be an integer"),
        (dict(burn_in_gradient=True), r"burn_in_gradient=True .* needs burn_in > 0"),
        (dict(state_refresh="yes"), r"state_refresh must be True or False"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        tiny("gru", **options)


def test_map_obs_maps_arrays_and_dicts():
    assert map_obs(lambda a: a + 1, 1) == 2
    assert map_obs(lambda a: a * 2, {"a": 1, "b": 2}) == {"a": 2, "b": 4}
