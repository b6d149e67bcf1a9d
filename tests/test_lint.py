"""Lint, format and type check of the package (and the benchmarks' lint), as configured in pyproject.toml.

Each tool runs in a subprocess from the checkout's root, so it reads the same configuration as
``ruff check``, ``ruff format`` and ``mypy`` typed there (and as the pre-commit hooks); a failure
shows the tool's own output. The tools come with the dev extra; without them the tests skip.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["recurrent_rl", "envs", "benchmarks"]  # ruff; mypy checks the package only


def _run(tool: str, *args: str, timeout: int = 600) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    command = [sys.executable, "-m", tool, *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"`{' '.join([tool, *args])}` failed:\n{output}"


def test_ruff_check() -> None:
    _run("ruff", "check", *SOURCES)


def test_ruff_format() -> None:
    """Fix with ``ruff format recurrent_rl envs benchmarks``."""
    _run("ruff", "format", "--check", *SOURCES)


def test_mypy() -> None:
    """The files and settings are pyproject.toml's [tool.mypy]."""
    _run("mypy")
