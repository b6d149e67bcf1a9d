"""What the gymnasium startup hook costs an interpreter: ``python -c pass`` with and without it.

    python scripts/startup_time.py --python /tmp/venv/bin/python [--runs 300]

Give it the interpreter of a throwaway environment that has the wheel installed: the script
renames that environment's ``_recurrent_rl_gym_hook.pth`` to ``.pth.off`` and back, alternating
run by run (so drifts in machine load hit both sides alike), and prints the medians and the
median of the paired differences. It restores the file however it exits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

PTH = "_recurrent_rl_gym_hook.pth"


def site_packages(python: str) -> Path:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def one_run(python: str, code: str) -> float:
    start = time.perf_counter()
    subprocess.run([python, "-c", code], check=True)
    return time.perf_counter() - start


def measure(python: str, runs: int, code: str = "pass") -> dict[str, float]:
    pth = site_packages(python) / PTH
    if not pth.exists():
        raise SystemExit(f"{pth} not found: install the wheel into that environment first")
    off = pth.with_name(PTH + ".off")
    with_hook: list[float] = []
    without: list[float] = []
    try:
        for _ in range(3):  # warm the page cache and write the .pyc files
            one_run(python, code)
        for _ in range(runs):
            with_hook.append(one_run(python, code))
            pth.rename(off)
            try:
                without.append(one_run(python, code))
            finally:
                off.rename(pth)
    finally:
        if off.exists() and not pth.exists():
            off.rename(pth)
    diffs = [a - b for a, b in zip(with_hook, without)]
    return {
        "runs": runs,
        "with_hook_ms": 1e3 * statistics.median(with_hook),
        "without_hook_ms": 1e3 * statistics.median(without),
        "paired_difference_ms": 1e3 * statistics.median(diffs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--python", required=True, help="interpreter of a throwaway environment with the wheel installed"
    )
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--code", default="pass", help="what each interpreter runs (default: pass)")
    args = parser.parse_args()
    print(json.dumps(measure(args.python, args.runs, args.code), indent=2))


if __name__ == "__main__":
    main()
