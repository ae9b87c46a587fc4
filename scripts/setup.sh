#!/usr/bin/env bash
# Set up ./.venv with closedloop (JAX, CPU build from PyPI). With --docs, also the tools that
# build the documentation site; with --test, the test tools, the documentation tools,
# the benchmark baseline (the CPU build of PyTorch, pip install torch==2.13.0, which its tests
# check against the paper's golden numbers) and Debian's chromium for the report's browser
# test. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
test_tools=0
docs_tools=0
[ "${1:-}" = "--test" ] && test_tools=1
[ "${1:-}" = "--docs" ] && docs_tools=1
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
extra=""
[ "$docs_tools" = 1 ] && extra="[docs]"
if [ "$test_tools" = 1 ]; then
  extra="[test,bench,docs]"   # the suite builds the documentation too
  # the CPU build of PyTorch first, so that the bench extra pulls no multi-GB CUDA build
  .venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "torch==2.13.0"
fi
stamp=.venv/.closedloop-installed$extra
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] || ! .venv/bin/python -c "import closedloop, jax" 2>/dev/null; then
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
