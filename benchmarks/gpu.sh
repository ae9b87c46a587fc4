#!/usr/bin/env bash
# closedloop's GPU checks, for a machine with an NVIDIA GPU and JAX's CUDA build already
# installed (this script installs nothing; a few minutes):
#   1. the GPU-marked tests (python -m pytest -q -m gpu tests);
#   2. the ensemble benchmark on the GPU (training.device=gpu): di-tanh-closed ensembles of
#      1, 32 and 1024 members, 20 epochs each with all recording, a table with the GPU model,
#      the per-network epoch time (with recording, and the compiled training alone), the
#      throughput in network-epochs per second and the compile time.
# Usage (from anywhere): benchmarks/gpu.sh    PYTHON=... picks the interpreter (default: the
# checkout's .venv if there is one, else python3); MEMBERS=1,32,1024 EPOCHS=20 change the sizes.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MEMBERS="${MEMBERS:-1,32,1024}"
EPOCHS="${EPOCHS:-20}"
cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    || echo "(nvidia-smi not available)"
if ! "$PYTHON" -c "import jax, sys; print('jax', jax.__version__, jax.devices('gpu'))"; then
    echo "error: JAX sees no GPU (install JAX's CUDA build, e.g. pip install 'jax[cuda12]')" >&2
    exit 2
fi

status=0
echo "== GPU-marked tests"
timeout 240 "$PYTHON" -m pytest -q -m gpu tests -p no:cacheprovider || status=1

echo "== ensemble benchmark on the GPU (members $MEMBERS, $EPOCHS epochs)"
timeout 240 "$PYTHON" benchmarks/ours.py --cache "$cache" ensemble --device gpu \
    --members "$MEMBERS" --epochs "$EPOCHS" || status=1

exit "$status"
