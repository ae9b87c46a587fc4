#!/usr/bin/env bash
# closedloop's GPU checks, for a machine with an NVIDIA GPU and JAX's CUDA build already
# installed (this script installs nothing; a few minutes):
#   1. the GPU-marked tests (python -m pytest -q -m gpu tests);
#   2. the ensemble benchmark on the GPU (training.device=gpu): di-tanh-closed ensembles of
#      1, 32 and 1024 members, 20 epochs each with all recording, a table with the GPU model,
#      the per-network epoch time (with recording, and the compiled training alone), the
#      throughput in network-epochs per second and the compile time;
#   3. closedloop reproduce --seeds 20 of the double-integrator figures (fig1-fig5) on one
#      worker on the GPU (every job's 20 seeds train as one batched ensemble), with its wall
#      time and the claims' support table (target: under 15 minutes). SEEDS=20 changes the
#      seeds, SEEDS=0 skips it.
# Usage (from anywhere): benchmarks/gpu.sh    PYTHON=... picks the interpreter (default: the
# checkout's .venv if there is one, else python3); MEMBERS=1,32,1024 EPOCHS=20 change the sizes.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MEMBERS="${MEMBERS:-1,32,1024}"
EPOCHS="${EPOCHS:-20}"
SEEDS="${SEEDS:-20}"
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

if [[ "$SEEDS" != 0 ]]; then
    echo "== closedloop reproduce --seeds $SEEDS --only fig1,fig2,fig3,fig4,fig5 on the GPU"
    start=$(date +%s)
    CLOSEDLOOP_JAX_CACHE="$cache" timeout 1200 "$PYTHON" -m closedloop.cli reproduce \
        --seeds "$SEEDS" --only fig1,fig2,fig3,fig4,fig5 --device gpu --workers 1 \
        --out "$cache/reproduction" || status=1
    echo "wall time: $(( $(date +%s) - start )) s"
fi

exit "$status"
