"""Registers recurrent_rl's ``pomdp/`` environments whenever ``gymnasium`` is imported.

Gymnasium 1.x no longer loads the ``gymnasium.envs`` entry points, so ``gym.make("pomdp/...")``
would need an ``import recurrent_rl`` first. The wheel ships ``_recurrent_rl_gym_hook.pth``
next to this module; its one line imports this module at interpreter startup, and all it does
is put a meta path finder first on ``sys.meta_path``. The finder answers no import itself: when
``gymnasium`` is about to be imported, it asks the other finders for gymnasium's spec and wraps
its loader, so that right after gymnasium's ``__init__`` has run, it calls
``recurrent_rl.envs.registry.register_all()`` (which imports gymnasium and numpy, never torch).

It imports nothing at startup beyond ``sys``, and an interpreter that never imports gymnasium
pays one string comparison per import. If recurrent_rl cannot be imported (uninstalled, broken,
or part-way through its own import), gymnasium imports as if the hook were not there.
"""

import sys  # the only import at startup (no __future__ either: it is a module too)

_TARGET = "gymnasium"


def _register() -> None:
    try:
        from recurrent_rl.envs.registry import register_all

        register_all()
    except ImportError:
        pass  # recurrent_rl is gone, or half-imported (its own import registers the envs then)
    except Exception as exc:  # a broken recurrent_rl must not break `import gymnasium`
        import warnings

        warnings.warn(f"recurrent_rl could not register its pomdp/ environments: {exc!r}", RuntimeWarning, stacklevel=2)


class _Loader:
    """Runs the real loader, then puts it back on the module and registers the environments."""

    def __init__(self, loader: object):
        self._loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: object) -> object:
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: object) -> None:
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader  # type: ignore[attr-defined]
        _register()


class GymnasiumImportHook:
    """A meta path finder that finds nothing itself and wraps gymnasium's loader (see the module doc)."""

    recurrent_rl_gym_hook = True  # how other copies of this module recognise an installed hook

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "recurrent_rl_gym_hook", False):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if getattr(spec, "loader", None) is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Put the hook first on ``sys.meta_path``, once per interpreter."""
    if not any(getattr(finder, "recurrent_rl_gym_hook", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, GymnasiumImportHook())


install()
