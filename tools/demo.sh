#!/usr/bin/env bash
# The README's main command: bootstraps the environment when it is missing, then runs the
# CPU CMAE pretraining demo on the photographs shipped inside scikit-image.
#   bash tools/demo.sh [--work-dir DIR] [demo options, see: python tools/demo.py --help]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
bash tools/setup_env.sh
exec .venv/bin/python tools/demo.py "$@"
