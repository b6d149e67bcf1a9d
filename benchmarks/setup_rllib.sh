#!/usr/bin/env bash
# RLlib's own virtual environment for benchmarks/scaling.py (.venv-rllib): RLlib pins another
# Gymnasium than this package's lock, so it cannot share .venv. The package is installed there
# too (the pomdp/ envs and the StepCost wrapper), with torch's CPU build pinned first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-rllib/bin/python ] || "$PYTHON" -m venv .venv-rllib
PIP=(.venv-rllib/bin/python -m pip --quiet --disable-pip-version-check)
"${PIP[@]}" install "torch==2.13.0"
# the Ray version of the tested lock, so both sides run the same Ray
RAY=$(sed -n 's/^ray==//p' constraints.txt)
"${PIP[@]}" install -e ".[rllib]" "ray[rllib]==$RAY"
echo "setup_rllib: $(.venv-rllib/bin/python -c 'import ray; print("ray", ray.__version__)') in .venv-rllib"
