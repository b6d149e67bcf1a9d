"""The non-finite guard: an optimizer that would step on nan/inf gradients raises instead.

Training then stops with :class:`~recurrent_rl.errors.NonFiniteLossError`, and the parameters and
optimizer moments stay those of the last good step, so a model saved after the error is good.
"""

from __future__ import annotations

from typing import Any

import torch as th

from recurrent_rl.errors import NON_FINITE_GRADIENTS, NonFiniteLossError


def check_finite(grads: list[th.Tensor]) -> None:
    """Raise :class:`NonFiniteLossError` if any gradient holds nan or inf (one norm over all)."""
    if grads and not bool(th.isfinite(th.nn.utils.get_total_norm(grads))):
        raise NonFiniteLossError(NON_FINITE_GRADIENTS)


def check_finite_gradients(optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Optimizer pre-step hook running :func:`check_finite` over the optimizer's gradients."""
    check_finite([p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None])


def refuse_non_finite_steps(optimizer: th.optim.Optimizer) -> None:
    """Make ``optimizer`` raise :class:`NonFiniteLossError` instead of stepping on nan/inf gradients.

    An optimizer whose class sets ``checks_finite_gradients = True`` (the speed backend's
    ``PolicyAdam``) checks in its own ``step`` and gets no hook.
    """
    if not getattr(optimizer, "checks_finite_gradients", False):
        optimizer.register_step_pre_hook(check_finite_gradients)
