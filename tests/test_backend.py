"""The backend hook: plain torch by default in the model code, the CPU speed layer behind one option.

Equivalence (the torch backend and the speed backend compute the same losses and gradients),
isolation (training with backend="torch" never imports recurrent_rl.accel), and the option's
contract (names, auto, save/load, bad values).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from recurrent_rl import NonFiniteLossError, RecurrentPPO
from recurrent_rl.accel.backend import PARTS, CpuKernels
from recurrent_rl.accel.optim import PolicyAdam
from recurrent_rl.nets.backend import BACKENDS, TorchBackend, resolve_backend


def _model(
    backend, memory: str = "gru", critic_memory: str = "separate", seed: int = 0, **policy_kwargs
) -> RecurrentPPO:
    env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=4, seed=seed)
    kwargs = dict(
        memory=memory,
        hidden_size=16,
        critic_memory=critic_memory,
        backend=backend,
        net_arch=dict(pi=[16], vf=[16]),
        activation_fn=th.nn.ReLU,
        **policy_kwargs,
    )
    return RecurrentPPO(
        "MlpGruPolicy", env, n_steps=16, batch_size=32, sequence_length=8, n_epochs=1, seed=seed, policy_kwargs=kwargs
    )


def test_the_names_resolve_to_the_backends():
    assert BACKENDS == ("auto", "torch", "cpu-kernels")
    assert isinstance(resolve_backend("torch"), TorchBackend) and not isinstance(resolve_backend("torch"), CpuKernels)
    assert isinstance(resolve_backend("cpu-kernels"), CpuKernels)
    assert isinstance(resolve_backend("auto", "cpu"), CpuKernels)
    # off the CPU nothing of the speed layer applies: auto is plain torch there
    assert type(resolve_backend("auto", "cuda")) is TorchBackend
    assert type(resolve_backend("auto", "meta")) is TorchBackend
    custom = CpuKernels(parts=["memory"])
    assert resolve_backend(custom) is custom


def test_bad_backends_are_named_with_the_choices():
    with pytest.raises(
        ValueError, match=r"backend='gpu' is not a backend; choose one of \['auto', 'torch', 'cpu-kernels'\]"
    ):
        _model("gpu")
    with pytest.raises(ValueError, match="neither one of"):
        _model(object())
    with pytest.raises(ValueError, match=r"unknown cpu-kernels parts \['fast'\]"):
        CpuKernels(parts=["memory", "fast"])


@pytest.mark.parametrize("backend", ["torch", "cpu-kernels", "auto"])
def test_the_policy_says_which_backend_runs(backend):
    policy = _model(backend).policy
    assert policy.backend == backend
    assert policy.backend_name == ("torch" if backend == "torch" else "cpu-kernels")
    if backend == "torch":
        # SB3's own optimizer choice: Adam with eps 1e-5, guarded by the non-finite hook
        assert type(policy.optimizer) is th.optim.Adam and policy.optimizer.defaults["eps"] == 1e-5
        assert policy.optimizer._optimizer_step_pre_hooks
    else:
        assert type(policy.optimizer) is PolicyAdam


def test_auto_follows_the_device_the_policy_moves_to(monkeypatch):
    policy, fixed = _model("auto").policy, _model("cpu-kernels").policy
    assert policy.backend_name == "cpu-kernels"
    seen = []
    monkeypatch.setattr(
        "recurrent_rl.nets.policies.resolve_backend",
        lambda name, device, kernel_threads=None: seen.append((name, str(device))) or TorchBackend(),
    )
    policy.to("cpu")
    assert seen == [("auto", "cpu")] and policy.backend_name == "torch"
    fixed.to("cpu")
    assert fixed.backend_name == "cpu-kernels"  # a named backend stays as asked


def test_kernel_threads_are_a_setting_of_the_backend_object(monkeypatch):
    """``kernel_threads`` reaches the policy's CpuKernels (and follows a move of the policy), so a run
    sets it without touching the speed layer's process default; torch's backend ignores it."""
    from recurrent_rl.accel import native

    default = native.kernel_threads()
    policy = _model("auto", kernel_threads=1).policy
    assert policy._backend.threads == 1 and native.kernel_threads() == default
    policy.to("cpu")
    assert policy._backend.threads == 1
    assert _model("cpu-kernels").policy._backend.threads is None  # the process default
    if native.available():  # the setting reaches the compiled layer's calls
        asked = []
        threads_for = native.threads_for
        monkeypatch.setattr(native, "threads_for", lambda *args: asked.append(args[2]) or threads_for(*args))
        _model("auto", kernel_threads=1).learn(64)
        assert asked and set(asked) == {1}
    assert _model("torch", kernel_threads=2).policy.backend_name == "torch"
    with pytest.raises(ValueError, match="kernel_threads must be 1, 2 or 'auto'"):
        _model("cpu-kernels", kernel_threads=3)


@pytest.mark.parametrize("memory", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
def test_torch_and_speed_backends_compute_the_same_update(memory, critic_memory):
    """Values, log-probs, entropy and every gradient of one minibatch, and a rollout step's
    values and log-probs, agree between the backends (same weights) to float32 rounding."""
    model = _model("cpu-kernels", memory=memory, critic_memory=critic_memory)
    model.learn(64)
    policy = model.policy
    data = next(iter(model.rollout_buffer.get(32)))
    actions = data.actions.long().flatten()
    obs = th.randn(4, 4)
    starts = th.tensor([1.0, 0.0, 1.0, 0.0])
    state = policy.initial_state(4)
    state = type(state)(*(tuple(th.randn_like(s) for s in part) for part in state))

    def run(backend):
        policy._backend = backend
        policy.zero_grad()
        values, log_prob, entropy = policy.evaluate_actions(data.observations, actions)
        (values.square().sum() + log_prob.sum() + entropy.sum()).backward()
        with th.no_grad():
            step_values = policy.predict_values(obs, state, starts)
            latent_pi, latent_vf, next_state = policy._step_latents(obs, state, starts)
        return [
            values,
            log_prob,
            entropy,
            *(p.grad for p in policy.parameters()),
            step_values,
            latent_pi,
            latent_vf,
            *(s for part in next_state for s in part),
        ]

    fast, plain = run(CpuKernels()), run(TorchBackend())
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        th.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_training_with_the_torch_backend_never_imports_the_speed_layer():
    code = textwrap.dedent("""
        import sys
        import torch as th
        th.set_num_threads(1)
        from stable_baselines3.common.env_util import make_vec_env
        from recurrent_rl import RecurrentPPO
        env = make_vec_env("pomdp/CartPoleNoVel-v1", n_envs=2, seed=0)
        model = RecurrentPPO("MlpLstmPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                             policy_kwargs=dict(hidden_size=8, backend="torch"))
        model.learn(64)
        actions, state = model.predict(env.reset(), state=None, episode_start=[True, True])
        loaded = [m for m in sys.modules if m.startswith("recurrent_rl.accel")]
        print("ACCEL", loaded)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ACCEL []" in result.stdout, result.stdout


def test_the_backend_is_saved_and_loaded(tmp_path):
    model = _model("torch")
    model.learn(32)
    model.save(tmp_path / "model.zip")
    loaded = RecurrentPPO.load(tmp_path / "model.zip")
    assert loaded.policy.backend == "torch" and loaded.policy.backend_name == "torch"
    obs = th.randn(4, 4).numpy()
    a1, s1 = model.predict(obs, deterministic=True)
    a2, s2 = loaded.predict(obs, deterministic=True)
    assert (a1 == a2).all()
    for x, y in zip(s1, s2):
        th.testing.assert_close(th.as_tensor(x), th.as_tensor(y))


def test_the_torch_backend_refuses_non_finite_gradients():
    model = _model("torch")
    model.learn(32)
    policy = model.policy
    before = [p.detach().clone() for p in policy.parameters()]
    for p in policy.parameters():
        p.grad = th.full_like(p, float("nan"))
    with pytest.raises(NonFiniteLossError):
        policy.optimizer.step()
    for p, b in zip(policy.parameters(), before):
        assert th.equal(p, b)


@pytest.mark.parametrize("left_out", PARTS)
def test_each_part_can_be_left_out(left_out):
    """CpuKernels without one part trains, and that part's torch path runs instead."""
    backend = CpuKernels(parts=[p for p in PARTS if p != left_out])
    model = _model(backend)
    model.learn(32)
    assert (type(model.policy.optimizer) is PolicyAdam) == (left_out != "optimizer")
    latent = th.randn(3, 16)
    dist = model.policy._get_action_dist_from_latent(latent)
    from recurrent_rl.accel.distributions import LeanCategorical

    assert isinstance(dist.distribution, LeanCategorical) == (left_out != "distributions")
