#!/usr/bin/env bash
# The README's test command (what CI runs): bootstraps the full environment when it is
# missing or is only the demo's (tools/setup_env.sh's default profile: MMCV with compiled
# ops, all extras; first time ~15 min, mostly the mmcv build; later seconds), runs the lint
# (tools/lint.sh: flake8, isort, yapf), then the whole test suite.
#   bash tools/run_tests.sh [PYTEST_ARGS...]     e.g. -m "not e2e" for the fast subset
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
T0=$(date +%s)
bash tools/setup_env.sh
T1=$(date +%s)
echo "[run_tests] phase 'environment' took $((T1 - T0))s"
set +e
bash tools/lint.sh
LINT=$?
T2=$(date +%s)
echo "[run_tests] phase 'lint' took $((T2 - T1))s (exit code $LINT)"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} .venv/bin/python -m pytest "$@"
RC=$?
set -e
T3=$(date +%s)
echo "[run_tests] phase 'tests' took $((T3 - T2))s (exit code $RC)"
echo "[run_tests] total $((T3 - T0))s"
if [[ $LINT -ne 0 ]]; then
  echo "[run_tests] FAILED: lint findings above (bash tools/lint.sh)" >&2
  exit 1
fi
exit $RC
