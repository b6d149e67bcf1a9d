"""PolicyAdam: the same update as torch's fused Adam, and no step on non-finite gradients."""

from __future__ import annotations

import copy

import pytest
import torch as th

from recurrent_rl import NonFiniteLossError
from recurrent_rl.accel.optim import PolicyAdam, refuse_non_finite_steps


def _net() -> th.nn.Module:
    th.manual_seed(0)
    return th.nn.Sequential(
        th.nn.Linear(3, 8),
        th.nn.Tanh(),
        th.nn.GRU(8, 5),
    )


def _loss(net: th.nn.Module, step: int) -> th.Tensor:
    g = th.Generator().manual_seed(step)
    x = th.randn(4, 2, 3, generator=g)
    out, _ = net[2](net[1](net[0](x)))
    return (out**2).mean() + out.sum() * 0.1


def _train(net: th.nn.Module, opt: th.optim.Optimizer, steps: range, lrs: list[float]) -> None:
    for step in steps:
        for group in opt.param_groups:
            group["lr"] = lrs[step]  # as SB3 sets a schedule's learning rate
        opt.zero_grad()
        _loss(net, step).backward()
        opt.step()


def test_same_update_and_state_as_torch_fused_adam():
    ours, ref = _net(), _net()
    lrs = [1e-2 * (1 - i / 10) for i in range(10)]
    opt = PolicyAdam(ours.parameters(), lr=lrs[0], eps=1e-5)
    ref_opt = th.optim.Adam(ref.parameters(), lr=lrs[0], eps=1e-5, fused=True)
    _train(ours, opt, range(6), lrs)
    _train(ref, ref_opt, range(6), lrs)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert th.equal(a, b)
    # the state dict carries over between the two, both ways
    state, ref_state = copy.deepcopy(opt.state_dict()), copy.deepcopy(ref_opt.state_dict())  # as a checkpoint
    assert all(float(s["step"]) == 6 for s in state["state"].values())
    swapped, ref_swapped = copy.deepcopy(ours), copy.deepcopy(ref)
    opt2 = th.optim.Adam(swapped.parameters(), lr=lrs[0], eps=1e-5, fused=True)
    opt2.load_state_dict(state)
    ref_opt2 = PolicyAdam(ref_swapped.parameters(), lr=lrs[0], eps=1e-5)
    ref_opt2.load_state_dict(ref_state)
    _train(swapped, opt2, range(6, 10), lrs)
    _train(ref_swapped, ref_opt2, range(6, 10), lrs)
    _train(ours, opt, range(6, 10), lrs)
    for a, b, c in zip(ours.parameters(), swapped.parameters(), ref_swapped.parameters()):
        assert th.equal(a, b) and th.equal(a, c)


def test_non_finite_gradient_stops_before_anything_changes():
    net = _net()
    opt = PolicyAdam(net.parameters(), lr=1e-2)
    _train(net, opt, range(3), [1e-2] * 3)
    before = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    _loss(net, 3).backward()
    next(net.parameters()).grad[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="lower learning_rate"):
        opt.step()
    for key, value in net.state_dict().items():
        assert th.equal(value, before[0][key])
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            assert th.equal(value, before[1]["state"][index][key])


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_other_optimizers_are_guarded_by_a_hook(bad):
    net = _net()
    opt = th.optim.SGD(net.parameters(), lr=0.1)
    refuse_non_finite_steps(opt)
    opt.zero_grad()
    _loss(net, 0).backward()
    before = [p.detach().clone() for p in net.parameters()]
    list(net.parameters())[-1].grad[1] = bad
    with pytest.raises(NonFiniteLossError):
        opt.step()
    assert all(th.equal(a, b) for a, b in zip(net.parameters(), before))


def test_step_hooks_run_once_per_step():
    th.optim.Adam(_net().parameters())  # torch wraps Adam.step once an Adam exists: still once
    net = _net()
    opt = PolicyAdam(net.parameters(), lr=1e-2)
    calls = []
    opt.register_step_pre_hook(lambda *args: calls.append("pre"))
    opt.register_step_post_hook(lambda *args: calls.append("post"))
    _train(net, opt, range(3), [1e-2] * 3)  # the first step creates the state (torch's path)
    assert calls == ["pre", "post"] * 3


def test_a_closure_computes_the_gradients_that_are_checked_and_used():
    ours, ref = _net(), _net()
    opt = PolicyAdam(ours.parameters(), lr=1e-2)
    ref_opt = th.optim.Adam(ref.parameters(), lr=1e-2, fused=True)
    for step in range(3):
        for net, optimizer in ((ours, opt), (ref, ref_opt)):

            def closure(net=net, optimizer=optimizer, step=step):
                optimizer.zero_grad()
                loss = _loss(net, step)
                loss.backward()
                return loss

            assert optimizer.step(closure) is not None
    assert all(th.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))

    def bad_closure():
        opt.zero_grad()
        loss = _loss(ours, 9) * float("nan")
        loss.backward()
        return loss

    before = [p.detach().clone() for p in ours.parameters()]
    with pytest.raises(NonFiniteLossError):
        opt.step(bad_closure)
    assert all(th.equal(a, b) for a, b in zip(ours.parameters(), before))


def test_zero_grad_clears_or_zeroes_every_gradient_as_torch_does():
    net = _net()
    opt = PolicyAdam(net.parameters(), lr=1e-2)
    _loss(net, 0).backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in net.parameters())
    _loss(net, 1).backward()
    opt.zero_grad()  # SB3's call
    assert all(p.grad is None for p in net.parameters())
    _train(net, opt, range(2), [1e-2] * 2)  # and the next backward and step still work
    assert all(p.grad is not None for p in net.parameters())
