#!/usr/bin/env bash
# The device check, for a machine with a CUDA GPU: about five minutes on one H100.
#   1. the CUDA-parametrised tests (tests/test_devices.py, the attention test), skips listed;
#   2. the throughput comparison, CPU speed backend against CUDA (python -m benchmarks.devices:
#      GRU, LSTM, minGRU, transformer; the default preset's size and 256-unit memories with 64 envs);
#   3. the whole suite with CUDA visible: a test that fails only because a GPU is present shows here.
# Every step runs under its own time limit; the script goes on after a failure and exits non-zero
# if any step failed. PYTHON names an interpreter whose torch is a CUDA build with this package
# installed (default: .venv/bin/python; scripts/setup.sh installs torch's CPU build, so on a GPU
# machine install a CUDA build of the same torch version into the venv first).
#   bash scripts/gpu_check.sh 2>&1 | tee gpu_check.log
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WORKERS=${WORKERS:-12}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    "$PYTHON" -c 'import torch; print(f"gpu_check: torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device; run it on a GPU machine with PYTHON=<a python with a CUDA build of torch>")' >&2
    exit 2
fi
"$PYTHON" -c 'import torch; print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")'
date -u '+gpu_check: %Y-%m-%d %H:%M UTC'
failed=()

echo "== 1/3 CUDA-parametrised tests"
timeout 60 "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/test_devices.py tests/test_attention.py -k cuda \
    || failed+=("cuda tests")

echo "== 2/3 throughput: CPU speed backend against CUDA"
timeout 120 "$PYTHON" -m benchmarks.devices --rollouts 1 --jobs 8 || failed+=("benchmark")

echo "== 3/3 the whole suite with CUDA visible"
timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider -n "$WORKERS" || failed+=("suite")

if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: FAILED: ${failed[*]}"
    exit 1
fi
echo "gpu_check: all passed"
