#!/usr/bin/env bash
# Build the documentation site into docs/_build/html (open docs/_build/html/index.html): set up
# ./.venv with the docs tools, then Sphinx with warnings as errors. The tutorials are executed
# by the build; their outputs are cached in docs/_build/.jupyter_cache, so a rebuild executes
# only the tutorials that changed (--fresh executes all again).
set -euo pipefail
cd "$(dirname "$0")/.."
fresh=0
[ "${1:-}" = "--fresh" ] && fresh=1
bash scripts/setup.sh --docs
[ "$fresh" = 1 ] && rm -rf docs/_build
.venv/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
echo "docs: docs/_build/html/index.html"
