"""Every private torch API the speed layer uses, in one place.

Each name below is looked up once, at import, so a torch release that renames or removes one
fails here with an ``ImportError`` that names it (``tests/test_torch_private.py`` checks each one
and what it computes), instead of deep inside an update. Nothing outside :mod:`recurrent_rl.accel`
uses them; the torch backend needs none.

What each buys is measured in the README (Benchmarks, the speed layer's parts).
"""

from __future__ import annotations

from typing import Any

import torch as th
from torch import nn
from torch.distributions import Distribution


def _need(owner: Any, name: str, what: str) -> Any:
    value = getattr(owner, name, None)
    if value is None:
        raise ImportError(
            f"torch {th.__version__} has no {what} ({name}), which recurrent_rl's CPU speed layer uses; "
            "use backend='torch' (policy option or config key policy.backend), or a torch version from "
            "constraints.txt"
        )
    return value


# One fused Adam kernel over all parameters (torch.optim.Adam(fused=True) calls it after its
# Python bookkeeping): PolicyAdam calls it directly.
fused_adam_ = _need(th, "_fused_adam_", "fused Adam kernel")
# In-place add of a scalar to a list of tensors (the step counters).
foreach_add_ = _need(th, "_foreach_add_", "foreach add")
# AMP's one-call non-finite check over a list of tensors (with a scale of 1 it changes nothing).
_amp_check = _need(th, "_amp_foreach_non_finite_check_and_unscale_", "AMP non-finite check")


def any_non_finite(tensors: list[th.Tensor]) -> bool:
    """Whether any of these CPU float32 tensors holds nan or inf, in one call."""
    found = th.zeros(1)
    _amp_check(tensors, found, th.ones(1))
    return bool(found.item())


def unhooked_step(optimizer_class: type[th.optim.Optimizer]) -> Any:
    """``optimizer_class.step`` without the hook-running wrapper torch.optim puts around every
    optimizer class's ``step`` (for a subclass whose own wrapped ``step`` already ran the hooks)."""
    step = optimizer_class.step
    # torch.optim wraps step with functools.wraps, which its stubs do not show
    return step.__wrapped__ if getattr(step, "hooked", False) else step  # type: ignore[attr-defined]


def flat_weights(rnn: nn.RNNBase) -> list[th.Tensor]:
    """An ``nn.RNNBase``'s parameters, per layer ``w_ih, w_hh, b_ih, b_hh`` (one list lookup
    instead of four ``getattr`` per layer)."""
    return rnn._flat_weights  # type: ignore[return-value]


def init_distribution_unchecked(distribution: Distribution, batch_shape: th.Size) -> None:
    """``Distribution.__init__`` with argument validation off."""
    Distribution.__init__(distribution, batch_shape, validate_args=False)


def disable_validation(distribution: Distribution) -> None:
    """Switch argument validation off on an existing distribution (``log_prob``'s sample check)."""
    distribution._validate_args = False


def default_validation() -> bool:
    """torch.distributions' current default for argument validation."""
    return bool(Distribution._validate_args)
