"""One place for the version: ``version`` in pyproject.toml.

``recurrent_rl.__version__`` reads it from the installed distribution's metadata (the editable
install of scripts/setup.sh, or a wheel), and no module of the package writes a version of its own.
tests/test_packaging.py checks the same in a freshly installed wheel.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installed_version() -> str:
    try:
        return metadata.version("recurrent_rl")
    except metadata.PackageNotFoundError:
        pytest.skip("recurrent_rl is not installed (tests run from the source tree only)")


def _pyproject_version() -> str:
    match = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert match, 'pyproject.toml has no `version = "..."` line in [project]'
    return match.group(1)


def test_version_is_the_distributions() -> None:
    import recurrent_rl

    assert recurrent_rl.__version__ == _installed_version()
    assert "__version__" in dir(recurrent_rl)


def test_installed_metadata_is_pyprojects() -> None:
    assert _installed_version() == _pyproject_version(), "the installed metadata is stale: re-run scripts/setup.sh"


def test_no_module_writes_a_version() -> None:
    written = []
    for folder in ("recurrent_rl", "envs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                targets = node.targets if isinstance(node, ast.Assign) else []
                if any(isinstance(t, ast.Name) and t.id == "__version__" for t in targets):
                    written.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert written == [], f"__version__ assigned in {written}: read it from the metadata (recurrent_rl/__init__.py)"


def test_version_is_read_on_first_use() -> None:
    """``import recurrent_rl`` does not read the metadata; the first ``__version__`` does."""
    code = (
        "import recurrent_rl; assert '__version__' not in vars(recurrent_rl); "
        "v = recurrent_rl.__version__; assert vars(recurrent_rl)['__version__'] == v; print(v)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _installed_version()
