"""sb3-contrib's own RecurrentPPO test file, run against this package with only its import changed.

The file is not part of this repository: it is taken at run time from sb3-contrib's source
distribution on the package index (``pip download --no-deps --no-binary :all:``), its line
``from sb3_contrib import RecurrentPPO`` replaced by ``from recurrent_rl import RecurrentPPO``,
and run with pytest in a subprocess. Where the download fails (no network), the tests skip and
say so, except under ``CI=true``, where a failed download fails them: CI must run the file.
Our own tests of every behaviour it covers are in tests/test_contrib_compat.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SB3_CONTRIB_VERSION = "2.9.2"
UPSTREAM_IMPORT = "from sb3_contrib import RecurrentPPO"
OUR_IMPORT = "from recurrent_rl import RecurrentPPO"


def _unavailable(reason: str) -> None:
    """Skip with ``reason``; under CI (``CI=true``) fail instead, so the file is never silently left out."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI=true: the upstream tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def upstream_test_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sb3_contrib_tests")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet"]
    command += [f"sb3-contrib=={SB3_CONTRIB_VERSION}", "-d", str(folder)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"could not download sb3-contrib {SB3_CONTRIB_VERSION}'s source distribution: {error}")
    archives = sorted(folder.glob("sb3_contrib-*.tar.gz"))
    if result.returncode != 0 or not archives:
        last = (result.stderr.strip().splitlines() or ["no archive"])[-1]
        _unavailable(f"could not download sb3-contrib {SB3_CONTRIB_VERSION}'s source distribution: {last}")
    with tarfile.open(archives[0]) as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith("/tests/test_lstm.py")), None)
        if member is None:
            _unavailable(f"sb3-contrib {SB3_CONTRIB_VERSION}'s source distribution holds no tests/test_lstm.py")
        source = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
    assert source.count(UPSTREAM_IMPORT) == 1, "sb3-contrib's test file no longer imports RecurrentPPO as expected"
    path = folder / "test_lstm.py"
    path.write_text(source.replace(UPSTREAM_IMPORT, OUR_IMPORT))
    return path


def run_upstream(path: Path, *args: str, timeout: float) -> tuple[dict[str, int], str]:
    """Run pytest on ``path`` in its own folder (none of this repository's pytest settings)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull]
    command += ["--rootdir", str(path.parent), "-o", "markers=slow", str(path), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=path.parent, env=env)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error|errors|skipped|deselected)", summary)}
    return counts, result.stdout[-6000:] + result.stderr[-2000:]


def test_sb3_contribs_recurrent_ppo_tests_pass(upstream_test_file):
    counts, output = run_upstream(upstream_test_file, "-m", "not slow", timeout=900)
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) + counts.get("errors", 0) == 0, output
    assert counts.get("passed", 0) == 20, output


@pytest.mark.slow
def test_sb3_contribs_recurrent_ppo_performance_test_passes(upstream_test_file):
    # CartPole without velocities, sb3-contrib's settings, 50k steps, mean return >= 450
    counts, output = run_upstream(upstream_test_file, "-k", "test_ppo_lstm_performance", timeout=1800)
    assert counts.get("passed", 0) == 1, output
