#!/usr/bin/env bash
# Set up ./.venv with closedloop and its test tools. Safe to run again: it only installs what
# is missing. On a machine without an NVIDIA GPU it installs the CPU build of PyTorch first
# (pip install torch==2.13.0 takes the CPU build where a local wheel is provided; elsewhere add
# --index-url https://download.pytorch.org/whl/cpu), so that no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" install "torch>=2.6,<3"
  else
    "${pip[@]}" install "torch==2.13.0"
  fi
fi
stamp=.venv/.closedloop-installed
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] || ! .venv/bin/python -c "import closedloop" 2>/dev/null; then
  "${pip[@]}" install -e ".[test]"
  echo "$digest" > "$stamp"
fi
