#!/usr/bin/env bash
# One idempotent set-up of cmae_mm's environment (docs/installation.md,
# docs/software_stack.md), with the exact versions of requirements/constraints.txt:
#   1. a git-ignored virtual environment in <repo>/.venv (override: CMAE_MM_VENV);
#   2. torch + torchvision, pinned together (constraints);
#   3. mmcv 2.1.0 with compiled ops, built once from its PyPI source distribution with the
#      C++20 change applied here, and cached as a wheel outside the repo
#      (CMAE_MM_CACHE, default ~/.cache/cmae_mm) keyed by mmcv/torch/python/CUDA versions;
#   4. cmae_mm itself, editable, with all extras ([seg], [det], [tensorboard], [tests]) under the
#      constraints: install_requires gives ranges, the constraints file the versions.
# Running it again when nothing changed takes about a second (a stamp file records what
# was installed). Usage: bash tools/setup_env.sh [--force]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CMAE_MM_VENV:-$REPO/.venv}"
CACHE="${CMAE_MM_CACHE:-$HOME/.cache/cmae_mm}"
PY="${CMAE_MM_PYTHON:-python3}"
MMCV_VERSION=2.1.0
STAMP="$VENV/.cmae_mm_stamp"

log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

want_stamp() {
  cat "$REPO"/requirements/*.txt "$REPO/setup.py" "$REPO/tools/setup_env.sh" | sha256sum | cut -c1-16
}

if [[ "${1:-}" != "--force" && -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
  log "environment up to date: $VENV"
  exit 0
fi
T0=$(date +%s)

# 1. virtual environment -------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  log "1/4 creating virtual environment $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
else
  log "1/4 virtual environment exists: $VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check)
CONSTRAINTS=(-c "$REPO/requirements/constraints.txt")
"${PIP[@]}" -q --upgrade pip
"${PIP[@]}" -q "${CONSTRAINTS[@]}" -r "$REPO/requirements/build.txt"

# 2. torch + torchvision ---------------------------------------------------------------
T=$(date +%s)
log "2/4 installing torch + torchvision ($(grep -E '^(torch|torchvision)==' \
  "$REPO/requirements/constraints.txt" | xargs))"
"${PIP[@]}" -q "${CONSTRAINTS[@]}" torch torchvision
TORCH_VERSION=$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0])')
PY_TAG=$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
log "    torch $TORCH_VERSION ready ($(elapsed "$T"))"

# 3. mmcv with compiled ops, cached ----------------------------------------------------
# CUDA ops are built only where a GPU and nvcc are both present.
CUDA_TAG=cpu
if command -v nvcc >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
   && "$VPY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  CUDA_TAG="cu$("$VPY" -c 'import torch; print(torch.version.cuda.replace(".", ""))')"
fi
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_VERSION}_${PY_TAG}_${CUDA_TAG}"
WHEEL_DIR="$CACHE/wheels/$KEY"
if "$VPY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  log "3/4 mmcv $MMCV_VERSION with ops already installed"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    T=$(date +%s)
    log "3/4 building mmcv $MMCV_VERSION with compiled ops ($CUDA_TAG) from source."
    log "    This takes about 14 minutes on 2 cores (more with CUDA ops); the wheel is cached"
    log "    in $WHEEL_DIR and reused next time."
    SRC=$(mktemp -d)
    "$VPY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$SRC"
    tar -xzf "$SRC"/mmcv-"$MMCV_VERSION".tar.gz -C "$SRC"
    # torch 2.14's headers refuse C++ standards older than C++20 (docs/software_stack.md).
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
    grep -q -- '-std=c++20' "$SRC/mmcv-$MMCV_VERSION/setup.py" \
      || { log "ERROR: could not raise mmcv's C++ standard to C++20"; exit 1; }
    FORCE_CUDA=0; [[ "$CUDA_TAG" != cpu ]] && FORCE_CUDA=1
    mkdir -p "$WHEEL_DIR"
    (cd "$SRC/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA \
      MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$VPY" -m pip wheel -q --no-build-isolation --no-deps \
      -w "$WHEEL_DIR.partial" .)
    mv "$WHEEL_DIR.partial"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.partial"
    rm -rf "$SRC"
    log "    mmcv built in $(elapsed "$T")"
  else
    log "3/4 reusing cached mmcv wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  fi
  "${PIP[@]}" -q --no-deps "$WHEEL_DIR"/mmcv-*.whl
fi

# 4. cmae_mm with all extras -----------------------------------------------------------
T=$(date +%s)
log "4/4 installing cmae_mm (editable) with extras seg, det, tensorboard, tests under the constraints"
# mmcv is already installed from the wheel above and satisfies the ranges; the
# constraints keep pip from changing torch or anything else verified.
"${PIP[@]}" -q "${CONSTRAINTS[@]}" --no-build-isolation -e "$REPO[all]"
"$VPY" -c 'import mmcv._ext, mmengine, mmpretrain, mmseg, mmdet; print("import check ok: mmcv", mmcv.__version__, "mmpretrain", mmpretrain.__version__, "mmseg", mmseg.__version__, "mmdet", mmdet.__version__)'
log "    done ($(elapsed "$T"))"

want_stamp > "$STAMP"
log "environment ready in $(elapsed "$T0"): $VENV"
