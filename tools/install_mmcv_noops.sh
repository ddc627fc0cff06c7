#!/usr/bin/env bash
# MMCV 2.1.0 WITHOUT compiled ops, installed as the distribution `mmcv`: all that CMAE and
# ConMIM pretraining (MMEngine + MMPretrain + cmae_mm) need, in seconds instead of the
# ~14-minute build of the ops (docs/installation.md, "Pretraining only").
#   bash tools/install_mmcv_noops.sh [PYTHON]          build once (cached), install into
#                                                      PYTHON's environment (default python3)
#   bash tools/install_mmcv_noops.sh --wheel-only [PYTHON]   build once, print the wheel path
# Exit codes: 2 bad arguments, 3 the source distribution could not be downloaded.
#
# Why a patched build: MMCV's setup.py (https://github.com/open-mmlab/mmcv/blob/v2.1.0/setup.py)
# skips every extension when MMCV_WITH_OPS=0 (get_extensions) but then names the
# distribution `mmcv-lite`:
#     name='mmcv' if os.getenv('MMCV_WITH_OPS', '1') == '1' else 'mmcv-lite',
# and `mmcv-lite` does not satisfy a requirement on `mmcv`: ours (requirements/mminstall.txt,
# setup.py install_requires) and the [mim] extras of MMPretrain, MMSegmentation and
# MMDetection, so pip refuses or pip check complains. The same PyPI source distribution is
# therefore built with MMCV_WITH_OPS=0 and that one line set to name='mmcv': the Python
# code is byte for byte MMCV 2.1.0's, only mmcv/_ext*.so is absent (what `mmcv.ops` needs;
# detection's RoIAlign/NMS, not pretraining). Building it ourselves (rather than renaming the
# files of PyPI's mmcv-lite wheel) keeps the metadata pip writes (name, RECORD hashes) its own.
# The build runs in a throwaway venv with setuptools<81 (MMCV's setup.py imports
# pkg_resources) and without torch or OpenCV, so the wheel is the same pure-Python
# py3-none-any wheel whatever PYTHON's environment holds (its metadata then requires
# opencv-python>=3, as MMEngine does). Cache: $CMAE_MM_CACHE/wheels/mmcv-2.1.0_noops_py3
# (CMAE_MM_CACHE defaults to ~/.cache/cmae_mm).
set -euo pipefail

MMCV_VERSION=2.1.0
CACHE="${CMAE_MM_CACHE:-$HOME/.cache/cmae_mm}"
WHEEL_DIR="$CACHE/wheels/mmcv-${MMCV_VERSION}_noops_py3"
log() { printf '[install_mmcv_noops %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

WHEEL_ONLY=0
if [[ "${1:-}" == "--wheel-only" ]]; then WHEEL_ONLY=1; shift; fi
if [[ "${1:-}" == -* || $# -gt 1 ]]; then
  log "ERROR: unknown arguments '$*'. Usage: bash tools/install_mmcv_noops.sh [--wheel-only] [PYTHON]"
  exit 2
fi
PY="${1:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; then
  log "ERROR: '$PY' is not a Python >= 3.8 interpreter. Pass the environment's python, e.g."
  log "       bash tools/install_mmcv_noops.sh \$CONDA_PREFIX/bin/python"
  exit 2
fi

if ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
  log "reusing the cached wheel in $WHEEL_DIR"
else
  T=$(date +%s)
  log "building mmcv $MMCV_VERSION without compiled ops (under a minute) into $WHEEL_DIR"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  "$PY" -m venv "$WORK/venv"
  BPY="$WORK/venv/bin/python"
  "$BPY" -m pip install -q --disable-pip-version-check 'setuptools>=77,<81' wheel
  "$BPY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    "mmcv==$MMCV_VERSION" -d "$WORK" || {
    log "ERROR: could not download mmcv $MMCV_VERSION's source distribution (pip's message"
    log "       is above): check the connection to the package index or pip's index settings."
    exit 3
  }
  tar -xzf "$WORK/mmcv-$MMCV_VERSION.tar.gz" -C "$WORK"
  SETUP="$WORK/mmcv-$MMCV_VERSION/setup.py"
  NAME_LINE="name='mmcv' if os.getenv('MMCV_WITH_OPS', '1') == '1' else 'mmcv-lite',"
  grep -qF "$NAME_LINE" "$SETUP" || {
    log "ERROR: mmcv $MMCV_VERSION's setup.py no longer has the line naming the package"
    log "       (\"$NAME_LINE\"): cannot keep the name 'mmcv'."
    exit 1
  }
  sed -i "s/$NAME_LINE/name='mmcv',/" "$SETUP"
  grep -qF "name='mmcv'," "$SETUP" || { log "ERROR: could not patch $SETUP"; exit 1; }
  mkdir -p "$WHEEL_DIR.partial"
  (cd "$WORK/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=0 "$BPY" -m pip wheel -q \
    --disable-pip-version-check --no-build-isolation --no-deps -w "$WHEEL_DIR.partial" .)
  mkdir -p "$WHEEL_DIR"
  mv "$WHEEL_DIR.partial"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.partial"
  log "built in $(( $(date +%s) - T ))s"
fi
WHEEL=$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -1)

if [[ $WHEEL_ONLY -eq 1 ]]; then
  echo "$WHEEL"
  exit 0
fi
if "$PY" -c 'import importlib.metadata as m; m.version("mmcv-lite")' 2>/dev/null; then
  log "ERROR: mmcv-lite is installed in $PY's environment; it provides the same 'mmcv'"
  log "       package. Remove it first: $PY -m pip uninstall mmcv-lite"
  exit 1
fi
# An mmcv 2.1.0 already there (with ops or not) is kept: pip reports it satisfied.
log "installing $(basename "$WHEEL") into $("$PY" -c 'import sys; print(sys.prefix)')"
"$PY" -m pip install --disable-pip-version-check "$WHEEL"
