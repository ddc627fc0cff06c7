#!/usr/bin/env bash
# Lint as the OpenMMLab code bases do: flake8, isort and yapf (settings in setup.cfg),
# over the package, configs, tools and tests. Exit code non-zero on any finding.
#   bash tools/lint.sh          check (what tools/run_tests.sh and CI run)
#   bash tools/lint.sh --fix    rewrite the files with isort and yapf, then check
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
PY="${CMAE_MM_PYTHON_BIN:-.venv/bin/python}"
mapfile -t FILES < <(git ls-files --cached --others --exclude-standard -- '*.py' \
  | grep -v '^cmae_mm/\.mim/')
if [[ "${1:-}" == "--fix" ]]; then
  "$PY" -m isort -q "${FILES[@]}"
  "$PY" -m yapf -i "${FILES[@]}"
fi
RC=0
"$PY" -m flake8 "${FILES[@]}" || RC=1
"$PY" -m isort --check-only --diff -q "${FILES[@]}" || RC=1
"$PY" -m yapf --diff "${FILES[@]}" || RC=1
if [[ $RC -ne 0 ]]; then
  echo "[lint] FAILED: fix the findings above (bash tools/lint.sh --fix rewrites the" \
       "formatting; flake8 findings need a manual fix)" >&2
else
  echo "[lint] ok: flake8, isort, yapf on ${#FILES[@]} files"
fi
exit $RC
