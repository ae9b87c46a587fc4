#!/usr/bin/env bash
# Set up ./.venv with closedloop (and, with --test, its test tools and Debian's chromium for the
# report's browser test). Safe to run again: it only installs what is missing. On a machine
# without an NVIDIA GPU it installs the CPU build of PyTorch first (pip install torch==2.13.0
# takes the CPU build where a local wheel is provided; elsewhere add
# --index-url https://download.pytorch.org/whl/cpu), so that no multi-GB CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
test_tools=0
[ "${1:-}" = "--test" ] && test_tools=1
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
extra=""
[ "$test_tools" = 1 ] && extra="[test]"
stamp=.venv/.closedloop-installed$extra
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] || ! .venv/bin/python -c "import closedloop" 2>/dev/null; then
  "${pip[@]}" install -e ".$extra"
  echo "$digest" > "$stamp"
fi
if [ "$test_tools" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq >/dev/null && \
      DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null || \
      echo "setup: could not install chromium; the browser test will be skipped" >&2
  fi
fi
