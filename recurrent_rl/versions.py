"""The installed versions of the packages a saved file depends on.

A leaf module. May import: nothing of the package (the standard library only).
"""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("recurrent_rl", "torch", "stable-baselines3", "gymnasium", "numpy")


def package_versions(*extra: str, python: bool = False) -> dict[str, str]:
    """``{package: version}`` for :data:`PACKAGES` and ``extra`` ("not installed" where missing)."""
    found = {"python": platform.python_version()} if python else {}
    for package in (*PACKAGES, *extra):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found
