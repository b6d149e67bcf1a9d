"""A second device without a GPU: the ``meta`` device, under a mode that checks every op.

:class:`MetaDevice` is a ``TorchFunctionMode`` that (1) raises when one op gets tensors on two
devices (what CUDA raises, a CPU scalar apart), and (2) lets code that reads a ``meta`` tensor on
the host go on: ``item()``/``float()`` give 1.0, ``bool()`` True, a copy to the CPU (``cpu()``,
``to("cpu")``, ``numpy()``) zeros of its shape. A model moved to ``meta`` then trains, acts and
evaluates through the package's own code, and any tensor made on the CPU and handed to it shows
up as an error, as it would on CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from torch.fx.experimental import _config as fx_config
from torch.overrides import TorchFunctionMode

READS = {"item": 1.0, "__float__": 1.0, "__bool__": True, "__int__": 1, "__index__": 1}


class MixedDevicesError(RuntimeError):
    """An op got tensors on two devices."""


def _tensors(value: Any) -> list[th.Tensor]:
    if isinstance(value, th.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> th.device | None:
    """The device a ``Tensor.to`` call moves to (None: a dtype-only call)."""
    for value in (*args[1:], kwargs.get("device")):
        if isinstance(value, (str, th.device)):
            return th.device(value)
        if isinstance(value, th.Tensor):
            return value.device
    return None


class MetaDevice(TorchFunctionMode):
    """See the module docstring; ``ops`` counts the ops that saw a ``meta`` tensor, ``reads`` the
    reads of one on the host (each a host sync on CUDA)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.reads = 0
        self._nonzero = False

    def __enter__(self) -> MetaDevice:
        # boolean-mask indexing on meta: take every element as selected (the shapes of a full mask)
        self._nonzero = fx_config.meta_nonzero_assume_all_nonzero
        fx_config.meta_nonzero_assume_all_nonzero = True
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        fx_config.meta_nonzero_assume_all_nonzero = self._nonzero

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        if isinstance(first, th.Tensor) and first.is_meta:
            self.ops += 1
            if name in (*READS, "tolist", "numpy", "cpu") or name == "to" and _target(args, kwargs) == th.device("cpu"):
                self.reads += 1
            if name in READS:
                return READS[name]
            if name == "tolist":
                return np.zeros(first.shape, dtype=np.float32).tolist()
            if name == "numpy":
                return np.zeros(first.shape, dtype=np.float32)
            if name == "cpu" or (name == "to" and (_target(args, kwargs) or first.device).type == "cpu"):
                return th.zeros(first.shape, dtype=first.dtype)
        if name not in ("to", "copy_", "__get__", "__set__", "_has_compatible_shallow_copy_type"):
            devices = {t.device.type for t in _tensors(args) + _tensors(kwargs) if t.dim() > 0 or t.is_meta}
            if len(devices) > 1:
                raise MixedDevicesError(f"{name} got tensors on {sorted(devices)}")
        return func(*args, **kwargs)
