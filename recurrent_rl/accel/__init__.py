"""The CPU speed backend (``backend="cpu-kernels"``): compiled memory layers and linear scan, a lean
Adam, a lean categorical distribution.

Nothing in the model code imports this package: :mod:`recurrent_rl.nets.backend` loads it by name
when a policy's ``backend`` option asks for it (``"cpu-kernels"``, or ``"auto"`` where it pays).

- :mod:`.backend`: :class:`~.backend.CpuKernels`, the backend object the policy calls;
- :mod:`.native`: builds and loads ``csrc/`` (C loops behind torch operators in C++);
- :mod:`.kernels`: dispatch to the compiled layers, and the NumPy reference loops;
- :mod:`.optim`: :class:`~.optim.PolicyAdam`, torch's fused Adam with a lean step;
- :mod:`.distributions`: :class:`~.distributions.LeanCategorical`;
- :mod:`.torch_private`: every private torch API the layer uses, in one place, with a test.

May import: ``nets`` and the leaf modules; torch, NumPy and SB3. Never ``ppo`` or ``runs``.
"""
