#!/usr/bin/env bash
# Create .venv (if missing) and install the package with its dev extra, pinned by
# constraints.txt (the tested lock). torch goes first, pinned to the CPU build, so the open
# `torch>=2.6` of pyproject.toml is already met and pip never fetches a CUDA build.
# The editable install carries the gymnasium startup hook (_recurrent_rl_gym_hook.pth; see
# setup.py), so gym.make("pomdp/...") works in this venv with no import of recurrent_rl.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
# compile the C kernels now rather than on first use (without a compiler: a note, NumPy kernels)
.venv/bin/python -c "from recurrent_rl.accel import native; native.main()"
