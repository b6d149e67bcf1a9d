"""Short module paths (``recurrent_rl.policies``, ``recurrent_rl.config``, ...) as aliases.

``import recurrent_rl.policies`` (and every other path below) gives the very module object that
lives in the package's subfolders, so scripts that use these paths work, and so does loading a
model zip whose pickled entries name classes by them (SB3 stores ``policy_class``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

OLD_PATHS: dict[str, str] = {
    "recurrent_rl.memory": "recurrent_rl.nets.memory",
    "recurrent_rl.policies": "recurrent_rl.nets.policies",
    "recurrent_rl.buffers": "recurrent_rl.ppo.buffers",
    "recurrent_rl.native": "recurrent_rl.accel.native",
    "recurrent_rl.kernels": "recurrent_rl.accel.kernels",
    "recurrent_rl.optim": "recurrent_rl.accel.optim",
    "recurrent_rl.distributions": "recurrent_rl.accel.distributions",
    "recurrent_rl.schema": "recurrent_rl.config.schema",
    "recurrent_rl.presets": "recurrent_rl.config.presets",
    "recurrent_rl.training": "recurrent_rl.runs.training",
    "recurrent_rl.callbacks": "recurrent_rl.runs.callbacks",
    "recurrent_rl.evaluation": "recurrent_rl.runs.evaluation",
    # recurrent_rl 0.1.0's paths of the modules that moved out of runs/ (zips pickle names by them)
    "recurrent_rl.runs.config": "recurrent_rl.config.train",
    "recurrent_rl.runs.schema": "recurrent_rl.config.schema",
    "recurrent_rl.runs.presets": "recurrent_rl.config.presets",
    "recurrent_rl.runs.folders": "recurrent_rl.io.run_folder",
    "recurrent_rl.runs.cli": "recurrent_rl.cli.main",
    "recurrent_rl.sweeps.ray_backend": "recurrent_rl.sweeps.executors",
    "recurrent_rl.export.cli": "recurrent_rl.cli.export",
    "recurrent_rl.supervised.cli": "recurrent_rl.cli.pretrain",
    "recurrent_rl.runs.trust": "recurrent_rl.io.trust",
    "recurrent_rl.export.spaces": "recurrent_rl.io.spaces",
    "recurrent_rl.export.schema": "recurrent_rl.io.schema",
    "recurrent_rl.export.sizes": "recurrent_rl.io.sizes",
    "recurrent_rl.encoder": "recurrent_rl.supervised.encoder",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._attributes = {name: getattr(module, name) for name in ("__spec__", "__loader__") if hasattr(module, name)}
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The target module ran already. importlib has just set the alias's spec and loader on
        # it: put the module's own back, so it stays the package or file it is (resources, reload).
        for name, value in self._attributes.items():
            setattr(module, name, value)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = OLD_PATHS.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
