#!/usr/bin/env bash
# Create .venv (if missing) and install the package with its dev extra, pinned by
# constraints.txt (the tested lock). torch goes first, pinned to the CPU build, so the open
# `torch>=2.6` of pyproject.toml is already met and pip never fetches a CUDA build.
# The editable install carries the gymnasium startup hook (_recurrent_rl_gym_hook.pth; see
# setup.py), so gym.make("pomdp/...") works in this venv with no import of recurrent_rl.
# pip runs quietly (its warnings and errors still show); each step prints one line.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV_PYTHON=.venv/bin/python
PIP=("$VENV_PYTHON" -m pip --quiet --disable-pip-version-check)

step() { printf 'setup: %s\n' "$*"; }
installed() { "$VENV_PYTHON" -c "from importlib.metadata import version; print(version('$1'))"; }

if [ -x "$VENV_PYTHON" ]; then
    step "using .venv ($("$VENV_PYTHON" --version))"
else
    "$PYTHON" -m venv .venv
    step "created .venv ($("$VENV_PYTHON" --version))"
fi
"${PIP[@]}" install --upgrade pip
step "pip $(installed pip)"
"${PIP[@]}" install -c constraints.txt "torch==2.13.0"
step "torch $(installed torch)"
"${PIP[@]}" install -c constraints.txt -e ".[dev]"
step "recurrent_rl $(installed recurrent_rl), editable, with the dev extra (lock: constraints.txt)"
# compile the C kernels now rather than on first use (without a compiler: a note, NumPy kernels)
step "$("$VENV_PYTHON" -c 'from recurrent_rl.accel import native; native.main()')"
step "done: source .venv/bin/activate, then recurrent-rl --help"
