"""Whether torch can use a device named in a config or on the command line: :func:`check_device`.

What ``auto`` means for a policy is :func:`recurrent_rl.nets.devices.choose_device`; this module
only refuses, before any work, a device this machine does not have. Importing it loads no torch.
"""

from __future__ import annotations

from recurrent_rl.config.schema import ConfigError


def check_device(device: str) -> None:
    """A :class:`ConfigError` (key ``device``) unless torch can train on ``device`` here.

    ``auto`` always works (what it picks: :func:`recurrent_rl.nets.devices.choose_device`);
    ``cpu``; ``cuda`` or ``cuda:N`` where torch sees that GPU; ``mps`` on Apple silicon; any
    other torch device type that says it is available.
    """
    if device == "auto":
        return
    import torch as th

    try:
        parsed = th.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N (or mps)", key="device") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not th.cuda.is_available():
            build = f"torch {th.__version__}" + ("" if th.version.cuda else ", a CPU-only build")
            raise ConfigError(f"device {device!r}: CUDA is not available here ({build}); use auto or cpu", key="device")
        count = th.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(
                f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}", key="device"
            )
        return
    backend = th.backends.mps if parsed.type == "mps" else getattr(th, parsed.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ConfigError(f"device {device!r}: torch cannot use {parsed.type} here; use auto or cpu", key="device")
