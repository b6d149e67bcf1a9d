"""The MLP heads over the memories' outputs, with their first layers as one compiled call.

SB3's ``MlpExtractor`` holds the actor's and the critic's heads as ``nn.Sequential`` stacks of
``Linear`` and activation modules. Their first layers read the memories' outputs (64 wide on the
core benchmark, against 4 observation entries for a memoryless MLP), so they are the heads'
largest products: per gradient step, forward and backward, six (256 x 64) x (64 x 64) products.
Run by torch, each is an MKL call plus an autograd node, and actor and critic take turns;
:func:`recurrent_rl.accel.native.dense` runs both first layers, with their activations and backward,
as one autograd node, on the kernel threads (actor and critic side by side with 2 threads).

The modules stay SB3's (same parameters, same state dict); only where their first two layers
are computed changes, and only when that is exactly what they compute: ``Linear`` with a bias
followed by ``ReLU`` or ``Tanh``, no hooks on either, float32 inputs on the CPU, and the
compiled library present. Anything else runs the modules as they are.
"""

from __future__ import annotations

import torch as th
from torch import nn

from recurrent_rl.accel import native, torch_private

ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _compiled_first_layer(net: nn.Module, x: th.Tensor) -> tuple[th.Tensor, th.Tensor, str] | None:
    """(weight, bias, activation name) of ``net``'s first two layers if they can run compiled on
    ``x``. Every rollout step asks, so modules are read through their dicts, not ``__getattr__``."""
    if type(net) is not nn.Sequential or len(net._modules) < 2:
        return None
    modules = iter(net._modules.values())
    linear, activation = next(modules), next(modules)
    name = ACTIVATIONS.get(type(activation))  # type: ignore[arg-type]
    if name is None or type(linear) is not nn.Linear:
        return None
    weight, bias = linear._parameters["weight"], linear._parameters["bias"]
    if bias is None or x.dim() != 2 or not x.is_cpu or x.dtype is not th.float32:
        return None
    if weight.dtype is not th.float32 or not weight.is_cpu or not weight.is_contiguous():
        return None
    for module in (net, linear, activation):
        if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks:
            return None
    if torch_private.global_module_hooks():
        return None
    return (weight, bias, name) if native.available() else None


def _rest(net: nn.Sequential, z: th.Tensor) -> th.Tensor:
    """``net`` from its third module on, applied to ``z``."""
    for index, module in enumerate(net):
        if index >= 2:
            z = module(z)
    return z


def run_heads(nets: list[nn.Module], xs: list[th.Tensor]) -> list[th.Tensor]:
    """``[net(x) for net, x in zip(nets, xs)]``, with the first layers that can run compiled as
    one :func:`~recurrent_rl.accel.native.dense` call when they have one shape and activation, else
    one call each."""
    specs = [_compiled_first_layer(net, x) for net, x in zip(nets, xs)]
    first = specs[0]
    if len(nets) > 1 and first is not None and all(
        spec is not None and spec[2] == first[2] and spec[0].shape == first[0].shape and x.shape == xs[0].shape
        for spec, x in zip(specs, xs)
    ):
        zs = native.dense(first[2], xs, [s[0] for s in specs], [s[1] for s in specs])  # the operator makes xs contiguous  # type: ignore[index]
        return [_rest(net, z) for net, z in zip(nets, zs)]  # type: ignore[arg-type]
    out = []
    for net, spec, x in zip(nets, specs, xs):
        if spec is None:
            out.append(net(x))
        else:
            z = native.dense(spec[2], [x], [spec[0]], [spec[1]])[0]
            out.append(_rest(net, z))  # type: ignore[arg-type]
    return out
