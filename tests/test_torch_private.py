"""The private torch APIs of the speed layer (recurrent_rl.accel.torch_private): each one is
there and computes what the speed layer relies on. A torch release that changes one fails here."""

from __future__ import annotations

import torch as th
from torch import nn

from recurrent_rl.accel import torch_private


def test_fused_adam_kernel_makes_torchs_fused_adam_update():
    th.manual_seed(0)
    p1 = th.randn(5, 3)
    p2 = p1.clone().requires_grad_(True)
    grad = th.randn(5, 3)
    reference = th.optim.Adam([p2], lr=1e-2, eps=1e-5, fused=True)
    p2.grad = grad.clone()
    reference.step()
    exp_avg, exp_avg_sq, step = th.zeros_like(p1), th.zeros_like(p1), th.zeros(())
    step += 1
    torch_private.fused_adam_(
        [p1],
        [grad.clone()],
        [exp_avg],
        [exp_avg_sq],
        [],
        [step],
        amsgrad=False,
        lr=1e-2,
        beta1=0.9,
        beta2=0.999,
        weight_decay=0.0,
        eps=1e-5,
        maximize=False,
    )
    assert th.equal(p1, p2.detach())
    state = reference.state[p2]
    assert th.equal(exp_avg, state["exp_avg"]) and th.equal(exp_avg_sq, state["exp_avg_sq"])


def test_foreach_add_adds_in_place():
    steps = [th.zeros(()), th.ones(())]
    torch_private.foreach_add_(steps, 1)
    assert [float(s) for s in steps] == [1.0, 2.0]


def test_non_finite_check_finds_nan_and_inf_and_changes_nothing():
    finite = [th.randn(4), th.randn(2, 3)]
    copies = [t.clone() for t in finite]
    assert not torch_private.any_non_finite(finite)
    assert all(th.equal(a, b) for a, b in zip(finite, copies))
    assert torch_private.any_non_finite([th.randn(3), th.tensor([1.0, float("nan")])])
    assert torch_private.any_non_finite([th.tensor([float("-inf")])])


def test_unhooked_step_skips_the_hooks_but_steps():
    p = th.zeros(2, requires_grad=True)
    opt = th.optim.SGD([p], lr=1.0)
    calls = []
    opt.register_step_pre_hook(lambda *args: calls.append(1))
    p.grad = th.ones(2)
    torch_private.unhooked_step(th.optim.SGD)(opt)
    assert calls == [] and th.equal(p.detach(), -th.ones(2))
    opt.step()
    assert calls == [1]


def test_flat_weights_are_the_modules_parameters_per_layer():
    for module in (nn.GRU(3, 4, num_layers=2), nn.LSTM(3, 4), nn.RNN(3, 4)):
        names = [
            f"{n}_l{layer}"
            for layer in range(module.num_layers)
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        flat = torch_private.flat_weights(module)
        assert len(flat) == len(names) and all(w is getattr(module, n) for w, n in zip(flat, names))


def test_distribution_validation_switches():
    default = torch_private.default_validation()
    assert isinstance(default, bool)
    dist = th.distributions.Normal(th.zeros(2), th.ones(2), validate_args=True)
    torch_private.disable_validation(dist)
    dist.log_prob(th.tensor([float("nan"), 0.0]))  # no ValueError with validation off
    categorical = th.distributions.Categorical.__new__(th.distributions.Categorical)
    categorical.logits = th.log_softmax(th.zeros(3), -1)
    categorical._param = categorical.logits
    categorical._num_events = 3
    torch_private.init_distribution_unchecked(categorical, th.Size())
    assert categorical._validate_args is False and categorical.batch_shape == th.Size()
