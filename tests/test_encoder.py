"""Encoder reuse: a pretrained sequence model's input layers and memory inside a RecurrentPPO policy."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import RecurrentPPO
from recurrent_rl.supervised import SequenceModel, SequenceModelConfig, save_sequence_model
from recurrent_rl.supervised.encoder import (
    EncoderMismatchError,
    encoder_policy_kwargs,
    export_encoder,
    freeze_encoder,
    load_encoder,
)

ENV = "pomdp/CartPoleNoVel-v1"


def trained_like_model(
    memory="gru", hidden_size=12, num_layers=1, input_layers=(6,), bidirectional=False, input_size=4
):
    """A sequence model with non-default weights and statistics, as training would leave it."""
    th.manual_seed(1)
    model = SequenceModel(
        SequenceModelConfig(
            input_size=input_size,
            output_size=2,
            memory=memory,
            hidden_size=hidden_size,
            num_layers=num_layers,
            input_layers=input_layers,
            bidirectional=bidirectional,
        )
    )
    with th.no_grad():
        for p in model.parameters():
            p.add_(th.randn_like(p) * 0.3)
    model.inputs.set_standardization(th.arange(input_size) * 0.1, th.arange(input_size) * 0.5 + 0.5)
    return model


def ppo_with_encoder(path, n_envs=2, **overrides):
    env = make_vec_env(ENV, n_envs=n_envs, seed=0)
    kwargs = encoder_policy_kwargs(path, **overrides)
    return RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=16 * n_envs, seed=0, policy_kwargs=kwargs)


def policy_hidden_states(policy, x, core):
    """Hidden states of a policy memory on (T, B, F) observations, one call over the sequence."""
    T, B = x.shape[:2]
    features = policy.extract_features(x.reshape(T * B, -1), policy.pi_features_extractor).view(T, B, -1)
    out, _ = core(features, core.initial_state(B), th.zeros(T, B))
    return out


@pytest.mark.parametrize(
    ("memory", "num_layers", "input_layers"),
    [
        ("gru", 1, (6,)),
        ("lstm", 2, ()),
        ("rnn", 1, (6, 5)),
        ("mingru", 2, (6,)),
        ("minlstm", 1, ()),
        ("transformer", 1, (6,)),
    ],
)
def test_loaded_encoder_gives_the_standalone_models_hidden_states(tmp_path, memory, num_layers, input_layers):
    model = trained_like_model(memory, num_layers=num_layers, input_layers=input_layers)
    path = export_encoder(model, tmp_path / "encoder.pt")
    ppo = ppo_with_encoder(path)  # ortho_init=True (SB3's default) re-initialises the extractor first
    load_encoder(ppo, path, critic=True)
    x = th.randn(9, 3, 4)
    with th.no_grad():
        expected, _ = model.encode(x)
        for core in (ppo.policy.actor_memory, ppo.policy.critic_core):
            th.testing.assert_close(policy_hidden_states(ppo.policy, x, core), expected, rtol=0, atol=1e-6)
        # step by step, as in rollouts, with the policy's own step()
        state = ppo.policy.actor_memory.initial_state(3)
        features = ppo.policy.extract_features(x.reshape(27, 4), ppo.policy.pi_features_extractor).view(9, 3, -1)
        for t in range(9):
            out, state = ppo.policy.actor_memory.step(features[t], state, th.zeros(3))
            th.testing.assert_close(out, expected[t], rtol=1e-5, atol=1e-5)
    # a full sequence-model file loads the same way as encoder.pt
    save_sequence_model(model, tmp_path / "model.pt")
    other = ppo_with_encoder(tmp_path / "model.pt")
    load_encoder(other, tmp_path / "model.pt")
    with th.no_grad():
        th.testing.assert_close(
            policy_hidden_states(other.policy, x, other.policy.actor_memory), expected, rtol=0, atol=1e-6
        )


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_frozen_encoder_is_bit_identical_after_learn_and_a_fine_tuned_one_changes(tmp_path):
    path = export_encoder(trained_like_model(), tmp_path / "encoder.pt")
    frozen = ppo_with_encoder(path)
    load_encoder(frozen, path, freeze=True, critic=True)
    tuned = ppo_with_encoder(path)
    load_encoder(tuned, path, freeze=False)
    parts = lambda p: {"extractor": p.pi_features_extractor, "actor": p.actor_memory, "critic": p.critic_core}  # noqa: E731
    before = {name: snapshot(m) for name, m in parts(frozen.policy).items()}
    heads_before = snapshot(frozen.policy.mlp_extractor)
    tuned_before = {name: snapshot(m) for name, m in parts(tuned.policy).items()}
    frozen.learn(128)
    tuned.learn(128)
    for name, module in parts(frozen.policy).items():
        for key, value in module.state_dict().items():
            assert th.equal(value, before[name][key]), f"frozen {name}.{key} moved"
    assert any(not th.equal(v, heads_before[k]) for k, v in frozen.policy.mlp_extractor.state_dict().items())
    for name in ("extractor", "actor"):
        changed = [
            k
            for k, v in parts(tuned.policy)[name].state_dict().items()
            if "input_" not in k and not th.equal(v, tuned_before[name][k])
        ]
        assert changed, f"fine-tuned {name} did not change"


def test_a_frozen_model_saves_loads_and_refreezes(tmp_path):
    path = export_encoder(trained_like_model(), tmp_path / "encoder.pt")
    ppo = ppo_with_encoder(path)
    load_encoder(ppo, path, freeze=True)
    ppo.learn(32)
    ppo.save(tmp_path / "ppo.zip")
    loaded = RecurrentPPO.load(tmp_path / "ppo.zip", env=ppo.env)  # the optimizer state fits the rebuilt optimizer
    frozen = freeze_encoder(loaded)
    assert frozen and not any(p.requires_grad for p in loaded.policy.actor_memory.parameters())
    before = snapshot(loaded.policy.actor_memory)
    loaded.learn(32)
    assert all(th.equal(v, before[k]) for k, v in loaded.policy.actor_memory.state_dict().items())


def test_mismatches_are_listed_by_name(tmp_path):
    path = export_encoder(trained_like_model("gru", hidden_size=12), tmp_path / "encoder.pt")
    env = make_vec_env(ENV, n_envs=2, seed=0)
    plain = RecurrentPPO("MlpLstmPolicy", env, n_steps=16, batch_size=32, policy_kwargs=dict(hidden_size=16))
    with pytest.raises(EncoderMismatchError) as error:
        load_encoder(plain, path)
    message = str(error.value)
    assert "memory: the policy has 'lstm', the encoder 'gru'" in message
    assert "hidden_size: the policy has 16, the encoder 12" in message
    assert "features extractor: the policy has FlattenExtractor" in message
    # an encoder trained on another env: the observation size differs
    wrong_obs = export_encoder(trained_like_model(input_size=3, input_layers=()), tmp_path / "pendulum.pt")
    ppo = ppo_with_encoder(wrong_obs)
    with pytest.raises(
        EncoderMismatchError, match=r"observation size: the env gives 4 values per observation .* trained on 3"
    ):
        load_encoder(ppo, wrong_obs)
    with pytest.raises(EncoderMismatchError, match=r"hidden_size=32 \(the encoder has 12\)"):
        encoder_policy_kwargs(path, hidden_size=32)
    with pytest.raises(EncoderMismatchError, match="critic_memory='none'"):
        load_encoder(ppo_with_encoder(path, critic_memory="none"), path, critic=True)


def test_bidirectional_models_and_foreign_files_are_refused(tmp_path):
    bidirectional = trained_like_model(bidirectional=True)
    with pytest.raises(EncoderMismatchError, match="bidirectional.*cannot see"):
        export_encoder(bidirectional, tmp_path / "encoder.pt")
    save_sequence_model(bidirectional, tmp_path / "bi.pt")
    with pytest.raises(EncoderMismatchError, match="bidirectional sequence model"):
        encoder_policy_kwargs(tmp_path / "bi.pt")
    th.save({"weights": th.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="holds 'something else'.*recurrent_rl/encoder"):
        encoder_policy_kwargs(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ValueError, match="is not a recurrent_rl model or encoder file"):
        encoder_policy_kwargs(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError):
        encoder_policy_kwargs(tmp_path / "missing.pt")


def test_predict_runs_with_a_loaded_encoder(tmp_path):
    path = export_encoder(trained_like_model(), tmp_path / "encoder.pt")
    ppo = ppo_with_encoder(path, n_envs=1)
    load_encoder(ppo, path, freeze=True)
    obs = ppo.env.reset()
    actions, state = ppo.predict(obs, episode_start=np.ones(1))
    assert actions.shape == (1,) and state[0].shape == (1, 1, 12)


def test_normalised_observations_are_flagged(tmp_path):
    from stable_baselines3.common.vec_env import VecNormalize

    path = export_encoder(trained_like_model(), tmp_path / "encoder.pt")
    env = VecNormalize(make_vec_env(ENV, n_envs=2, seed=0))
    ppo = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, policy_kwargs=encoder_policy_kwargs(path))
    with pytest.warns(UserWarning, match="norm_obs=False"):
        load_encoder(ppo, path)


def test_a_critic_with_its_own_extractor_gets_the_statistics_and_optionally_the_weights(tmp_path):
    model = trained_like_model()
    path = export_encoder(model, tmp_path / "encoder.pt")
    for critic in (False, True):
        ppo = ppo_with_encoder(path, share_features_extractor=False)
        load_encoder(ppo, path, critic=critic)
        vf = ppo.policy.vf_features_extractor.inputs
        th.testing.assert_close(vf.input_mean, model.inputs.input_mean)
        same = th.equal(vf.net[0].weight, model.inputs.net[0].weight)
        assert same == critic


def test_vecnormalize_can_take_over_the_encoders_standardisation(tmp_path):
    import warnings

    from stable_baselines3.common.vec_env import VecNormalize

    model = trained_like_model()
    path = export_encoder(model, tmp_path / "encoder.pt", {"transitions": 500})
    env = VecNormalize(make_vec_env(ENV, n_envs=2, seed=0))
    ppo = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, policy_kwargs=encoder_policy_kwargs(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: VecNormalize is meant to standardise here
        load_encoder(ppo, path, observation_statistics="vecnormalize")
    assert env.obs_rms.count == 500
    x = th.randn(9, 3, 4)
    normalized = th.as_tensor(env.normalize_obs(x.numpy().astype(np.float64)), dtype=th.float32)
    with th.no_grad():
        expected, _ = model.encode(x)  # at the start, VecNormalize standardises as the encoder did in training
        th.testing.assert_close(
            policy_hidden_states(ppo.policy, normalized, ppo.policy.actor_memory), expected, rtol=1e-4, atol=1e-4
        )
    plain = ppo_with_encoder(path)
    with pytest.raises(EncoderMismatchError, match=r"needs the env wrapped in VecNormalize\(norm_obs=True\)"):
        load_encoder(plain, path, observation_statistics="vecnormalize")
