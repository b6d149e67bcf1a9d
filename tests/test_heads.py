"""The heads' first layers as one compiled call (recurrent_rl/heads.py, native.dense): the same
values and gradients as SB3's modules, and the modules themselves wherever that is not exact."""

from __future__ import annotations

import pytest
import torch as th
from torch import nn

from recurrent_rl.accel import native
from recurrent_rl.accel.heads import run_heads

ACTIVATIONS = {"relu": th.relu, "tanh": th.tanh, "identity": lambda z: z}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("n_layers,N,K,P", [(1, 7, 5, 3), (2, 256, 64, 64), (2, 33, 40, 18)])
def test_dense_equals_torch_linear_and_activation(activation, n_layers, N, K, P):
    th.manual_seed(N)
    xs = [th.randn(N, K, requires_grad=True) for _ in range(n_layers)]
    ws = [(th.randn(P, K) / K**0.5).requires_grad_() for _ in range(n_layers)]
    bs = [th.randn(P, requires_grad=True) for _ in range(n_layers)]
    ours = native.dense(activation, xs, ws, bs)
    torchs = [ACTIVATIONS[activation](th.nn.functional.linear(x, w, b)) for x, w, b in zip(xs, ws, bs)]
    grads = [th.randn(N, P) for _ in range(n_layers)]
    ours_grads = th.autograd.grad(ours, [*xs, *ws, *bs], grads)
    torch_grads = th.autograd.grad(torchs, [*xs, *ws, *bs], grads)
    for a, b in zip([*ours, *ours_grads], [*torchs, *torch_grads]):
        assert a.shape == b.shape and th.allclose(a, b, atol=2e-5, rtol=1e-5)


def test_dense_relu_gradient_at_zero_and_nan_follow_torch():
    x = th.zeros(3, 4, requires_grad=True)  # pre-activations exactly 0: torch's ReLU passes no gradient
    w, b = th.ones(2, 4, requires_grad=True), th.zeros(2, requires_grad=True)
    (z,) = native.dense("relu", [x], [w], [b])
    z.sum().backward()
    assert th.equal(z, th.zeros(3, 2)) and th.equal(b.grad, th.zeros(2))
    with th.no_grad():
        (z,) = native.dense("relu", [th.full((1, 4), float("nan"))], [w], [b])
    assert th.isnan(z).all()


def test_dense_on_two_threads_equals_one_thread():
    th.manual_seed(1)
    xs = [th.randn(256, 64, requires_grad=True) for _ in range(2)]
    layers = [nn.Linear(64, 48) for _ in range(2)]
    results = []
    for threads in (1, 2):
        native.set_kernel_threads(threads)
        try:
            zs = native.dense("tanh", xs, [m.weight for m in layers], [m.bias for m in layers])
            params = [*xs, *(p for m in layers for p in m.parameters())]
            results.append([*zs, *th.autograd.grad(sum(z.square().sum() for z in zs), params)])
        finally:
            native.set_kernel_threads(1)
    assert all(th.equal(a, b) for a, b in zip(*results))


def test_dense_checks_shapes_and_dtypes():
    w, b = th.randn(3, 4), th.randn(3)
    with pytest.raises(ValueError, match=r"expected a contiguous float32 CPU tensor of shape \(5, 4\), got \(5, 3\)"):
        native.dense("relu", [th.randn(5, 3)], [w], [b])
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\)"):
        native.dense("relu", [th.randn(5, 4)], [w], [th.randn(2)])
    with pytest.raises(ValueError, match="torch.float64"):
        native.dense("relu", [th.randn(5, 4, dtype=th.float64)], [w], [b])
    with pytest.raises(ValueError, match="activation must be one of"):
        native.dense("gelu", [th.randn(5, 4)], [w], [b])
    with pytest.raises(ValueError, match="must be matrices"):
        native.dense("relu", [th.randn(2, 5, 4)], [w], [b])


def _head(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(
    "pi_sizes,vf_sizes,activation",
    [([16, 8], [16, 8], nn.ReLU), ([16, 8, 5], [16, 8], nn.Tanh), ([16, 8], [16, 6], nn.ReLU),
     ([16], [16, 8], nn.ReLU), ([16, 8], [16, 8], nn.ELU)],
)  # fmt: skip
def test_run_heads_equals_the_modules(pi_sizes, vf_sizes, activation):
    """Deeper heads, heads of different widths, an empty head and an activation without a
    compiled version (ELU: the modules run as they are) all give what the modules give."""
    th.manual_seed(0)
    nets = [_head(pi_sizes, activation), _head(vf_sizes, activation)]
    xs = [th.randn(12, 16, requires_grad=True) for _ in nets]
    ours = run_heads(nets, xs)
    expected = [net(x) for net, x in zip(nets, xs)]
    params = [*xs, *(p for net in nets for p in net.parameters())]
    loss = sum((o * th.arange(o.numel()).view_as(o)).sum() for o in ours)
    ours_grads = th.autograd.grad(loss, params, allow_unused=True)
    loss = sum((o * th.arange(o.numel()).view_as(o)).sum() for o in expected)
    expected_grads = th.autograd.grad(loss, params, allow_unused=True)
    for a, b in zip([*ours, *ours_grads], [*expected, *expected_grads]):
        assert (a is None and b is None) or th.allclose(a, b, atol=1e-4, rtol=1e-5)


def test_run_heads_shared_input_sums_both_gradients():
    th.manual_seed(0)
    nets = [_head([10, 6]), _head([10, 6])]
    x = th.randn(9, 10, requires_grad=True)
    (grad,) = th.autograd.grad(sum(o.sum() for o in run_heads(nets, [x, x])), x)
    (expected,) = th.autograd.grad(sum(net(x).sum() for net in nets), x)
    assert th.allclose(grad, expected, atol=1e-5)


def test_run_heads_calls_the_modules_when_they_are_hooked(monkeypatch):
    """A forward hook on the head means someone watches it: the modules then run themselves."""
    calls = []
    net = _head([6, 4])
    net[0].register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    dense = []
    monkeypatch.setattr(native, "dense", lambda *args: dense.append(args) or [])
    run_heads([net], [th.randn(3, 6)])
    assert calls == [th.Size([3, 4])] and not dense


def test_run_heads_uses_one_compiled_call_for_both_heads(monkeypatch):
    calls = []
    real = native.dense
    monkeypatch.setattr(native, "dense", lambda *args: calls.append(len(args[1])) or real(*args))
    nets = [_head([16, 8, 4]), _head([16, 8])]
    run_heads(nets, [th.randn(5, 16), th.randn(5, 16)])
    assert calls == [2]


@pytest.mark.parametrize("critic_memory", ["separate", "shared", "none"])
def test_policy_update_and_rollout_equal_the_modules_path(critic_memory, monkeypatch):
    """evaluate_actions (values, log-probs, entropy and every parameter's gradient) and a rollout
    step give the same with the compiled first layers as with SB3's modules."""
    from recurrent_rl.accel import heads
    from recurrent_rl import RecurrentPPO

    model = RecurrentPPO("MlpGruPolicy", "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16, seed=0,
                         policy_kwargs=dict(hidden_size=32, critic_memory=critic_memory,
                                            net_arch=dict(pi=[24, 24], vf=[24]), activation_fn=nn.ReLU))  # fmt: skip
    model.learn(32)
    policy = model.policy
    data = next(iter(model.rollout_buffer.get(16)))
    actions = data.actions.long().flatten()
    obs = th.randn(3, 4)

    def run():
        policy.zero_grad()
        values, log_prob, entropy = policy.evaluate_actions(data.observations, actions)
        (values.square().sum() + log_prob.sum() + entropy.sum()).backward()
        th.manual_seed(5)
        with th.no_grad():
            step = policy(obs, policy.initial_state(3), th.ones(3))
        return [values, log_prob, entropy, *(p.grad for p in policy.parameters()), step[0], step[1], step[2]]

    calls = []
    real = native.dense
    monkeypatch.setattr(native, "dense", lambda *args: calls.append(1) or real(*args))
    compiled = run()
    assert calls, "the compiled first layers did not run"
    monkeypatch.setattr(heads, "_compiled_first_layer", lambda net, x: None)
    modules = run()
    for a, b in zip(compiled, modules):
        assert th.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-5)


def test_run_heads_without_the_compiled_library_runs_the_modules(monkeypatch):
    monkeypatch.setattr(native, "available", lambda: False)
    monkeypatch.setattr(native, "dense", lambda *args: pytest.fail("dense called without the library"))
    nets = [_head([6, 4]), _head([6, 4])]
    xs = [th.randn(3, 6), th.randn(3, 6)]
    assert all(th.equal(a, net(x)) for a, net, x in zip(run_heads(nets, xs), nets, xs))


def test_a_custom_mlp_extractor_is_called_through_its_own_methods():
    """SB3's documented way to change the heads (a custom ``_build_mlp_extractor`` whose module
    has forward_actor / forward_critic and latent dims) keeps working: its methods are called."""
    from recurrent_rl import RecurrentPPO
    from recurrent_rl.nets.policies import RecurrentActorCriticPolicy

    calls = []

    class Heads(nn.Module):
        def __init__(self, n_in: int):
            super().__init__()
            self.latent_dim_pi, self.latent_dim_vf = 5, 3
            self.pi, self.vf = nn.Linear(n_in, 5), nn.Linear(n_in, 3)

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

    model = RecurrentPPO(Policy, "pomdp/CartPoleNoVel-v1", n_steps=16, batch_size=16, n_epochs=1, seed=0,
                         policy_kwargs=dict(hidden_size=8))  # fmt: skip
    model.learn(32)
    assert "actor" in calls and "critic" in calls
    model.predict(model.env.observation_space.sample(), deterministic=True)


def test_run_heads_takes_the_modules_for_weights_the_loops_cannot_read(monkeypatch):
    monkeypatch.setattr(native, "dense", lambda *args: pytest.fail("dense called"))
    net = _head([6, 4])
    with th.no_grad():
        net[0].weight = nn.Parameter(th.randn(6, 4).t())  # a transposed view: not contiguous
    x = th.randn(3, 6)
    assert th.equal(run_heads([net], [x])[0], net(x))
    double = _head([6, 4]).double()
    assert run_heads([double], [x.double()])[0].dtype == th.float64
