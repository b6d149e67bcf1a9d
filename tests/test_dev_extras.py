"""The dev extra is installed whole: the tests that `importorskip` an optional package would
otherwise leave themselves out without a failure (about a hundred of them)."""

from __future__ import annotations

import importlib
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the modules that test files skip without (pytest.importorskip), each with the extra that brings it
SKIPPED_WITHOUT = {
    "ray": "ray",
    "optuna": "tune",
    "sb3_contrib": "masking",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "sklearn": "examples",
    "mkdocs": "dev",
    "material": "dev",
    "mkdocstrings_handlers.python": "dev",
}


def _dev_requirements() -> list[str]:
    if sys.version_info < (3, 11):
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["optional-dependencies"]["dev"])


def test_every_dev_requirement_is_installed():
    missing = []
    for requirement in _dev_requirements():
        name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(requirement)
    assert missing == [], f"dev requirements not installed (bash scripts/setup.sh installs them): {missing}"


@pytest.mark.parametrize("module", sorted(SKIPPED_WITHOUT))
def test_the_modules_that_tests_skip_without_import(module):
    try:
        importlib.import_module(module)
    except ImportError as error:
        pytest.fail(f"{module} (recurrent_rl[{SKIPPED_WITHOUT[module]}]) does not import, so its tests skip: {error}")
