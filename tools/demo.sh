#!/usr/bin/env bash
# The README's main command: sets up what the demo needs when it is missing (the demo
# profile of tools/setup_env.sh: torch, MMCV without compiled ops, MMEngine, MMPretrain,
# cmae_mm; about 2 minutes from a warm pip cache), then runs the CPU CMAE pretraining demo
# on the photographs shipped inside scikit-image. A full environment already there
# (bash tools/run_tests.sh or bash tools/setup_env.sh) is used as it is.
#   bash tools/demo.sh [--work-dir DIR] [demo options, see: python tools/demo.py --help]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
T0=$(date +%s)
bash tools/setup_env.sh --profile demo
VENV="${CMAE_MM_VENV:-$REPO/.venv}"
echo "[demo.sh] environment ($(cut -d' ' -f1 "$VENV/.cmae_mm_stamp") profile) ready" \
  "after $(( $(date +%s) - T0 ))s: $VENV"
exec "$VENV/bin/python" tools/demo.py "$@"
