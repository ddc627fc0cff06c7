#!/usr/bin/env bash
# The README's test command: bootstraps the environment when it is missing (first time:
# ~20 min, mostly the mmcv build; later: seconds), then runs the whole test suite.
#   bash tools/run_tests.sh [PYTEST_ARGS...]
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
T0=$(date +%s)
bash tools/setup_env.sh
T1=$(date +%s)
echo "[run_tests] phase 'environment' took $((T1 - T0))s"
set +e
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/python -m pytest "$@"
RC=$?
set -e
T2=$(date +%s)
echo "[run_tests] phase 'tests' took $((T2 - T1))s (exit code $RC)"
echo "[run_tests] total $((T2 - T0))s"
exit $RC
