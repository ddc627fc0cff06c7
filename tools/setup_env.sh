#!/usr/bin/env bash
# One idempotent set-up of cmae_mm's environment (docs/installation.md,
# docs/software_stack.md), with the exact versions of requirements/constraints.txt:
#   1. a git-ignored virtual environment in <repo>/.venv (override: CMAE_MM_VENV);
#   2. torch + torchvision, pinned together (constraints);
#   3. mmcv 2.1.0 with compiled ops, built once from its PyPI source distribution with the
#      C++20 change applied here, and cached as a wheel outside the repo
#      (CMAE_MM_CACHE, default ~/.cache/cmae_mm) keyed by mmcv/torch/python versions and
#      the ops: CPU ops (key ..._cpu), or on a GPU machine CUDA ops (key
#      ..._cu130_sm80-90_ptx90) built with an nvcc matching torch's CUDA (a toolkit, else
#      NVIDIA's compiler packages from PyPI) for TORCH_CUDA_ARCH_LIST (default: A100,
#      H100 and the visible GPUs), verified after the install; the decisions are
#      cmae_mm/engine/cuda_env.py's (docs/installation.md, "GPU machines");
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
  { cat "$REPO"/requirements/*.txt "$REPO/setup.py" "$REPO/tools/setup_env.sh" \
      "$REPO/cmae_mm/engine/cuda_env.py"
    # the machine's GPUs and the build choices: a venv reused on a GPU node (a shared
    # home directory) is checked again there
    ls /proc/driver/nvidia/gpus 2>/dev/null || true
    echo "${TORCH_CUDA_ARCH_LIST:-}|${CMAE_MM_MMCV_OPS:-}|${CUDA_HOME:-}"
  } | sha256sum | cut -c1-16
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
# CPU ops, or CUDA ops where there is an NVIDIA GPU (CMAE_MM_MMCV_OPS=cuda|cpu decides
# elsewhere): cmae_mm/engine/cuda_env.py picks the nvcc and the architectures.
CUDA_ENV=("$VPY" -I "$REPO/cmae_mm/engine/cuda_env.py")
PLAN=$("${CUDA_ENV[@]}" plan "$MMCV_VERSION") \
  || { log "ERROR: cmae_mm/engine/cuda_env.py could not plan the mmcv build (above)"; exit 1; }
eval "$PLAN"
log "3/4 mmcv $MMCV_VERSION ops: $MMCV_OPS${ARCH_LIST:+ for TORCH_CUDA_ARCH_LIST=$ARCH_LIST} (nvcc found: $FOUND_NVCC)"
if [[ -n "$PLAN_NOTE" ]]; then log "    WARNING: $PLAN_NOTE"; fi
if [[ "$MMCV_OPS" == cuda && -z "$BUILD_CUDA_HOME" ]]; then
  log "    no nvcc matching torch's CUDA $TORCH_CUDA: installing NVIDIA's compiler packages"
  log "    from PyPI into the venv: $PIP_CUDA_PACKAGES"
  # shellcheck disable=SC2086  # the package list is split on purpose
  if PIP_OUT=$("${PIP[@]}" -q "${CONSTRAINTS[@]}" -c "$REPO/requirements/cuda_compiler.txt" \
      $PIP_CUDA_PACKAGES 2>&1); then
    BUILD_CUDA_HOME=$("${CUDA_ENV[@]}" pip-cuda-home "$VENV/cuda-$TORCH_CUDA") || BUILD_CUDA_HOME=
  else
    "${CUDA_ENV[@]}" no-compiler-message "pip install failed: $(tail -1 <<<"$PIP_OUT")" || true
  fi
  if [[ -n "$BUILD_CUDA_HOME" ]]; then
    log "    CUDA_HOME=$BUILD_CUDA_HOME (symlinks into the venv's NVIDIA packages)"
  else
    log "    WARNING: continuing with CPU ops (the reason is above)"
    MMCV_OPS=cpu CUDA_TAG=cpu MMCV_KEY=$MMCV_CPU_KEY
  fi
fi
WHEEL_DIR="$CACHE/wheels/$MMCV_KEY"
KEY_FILE="$VENV/.cmae_mm_mmcv_key"
mmcv_installed() {  # the right mmcv is installed: with CUDA ops, for these architectures
  "$VPY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" \
    2>/dev/null || return 1
  [[ "$MMCV_OPS" == cpu ]] && return 0
  [[ "$(cat "$KEY_FILE" 2>/dev/null)" == "$MMCV_KEY" ]] || return 1
  "${CUDA_ENV[@]}" check-mmcv
}
if mmcv_installed; then
  log "    mmcv $MMCV_VERSION with $MMCV_OPS ops already installed"
else
  if [[ "$MMCV_OPS" == cuda ]]; then
    log "    the installed mmcv (if any) is not $MMCV_KEY: installing that one"
  fi
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    T=$(date +%s)
    log "    building mmcv $MMCV_VERSION with compiled ops ($CUDA_TAG) from source."
    log "    This takes about 14 minutes on 2 cores (more with CUDA ops); the wheel is cached"
    log "    in $WHEEL_DIR and reused next time."
    SRC=$(mktemp -d)
    "$VPY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$SRC"
    tar -xzf "$SRC"/mmcv-"$MMCV_VERSION".tar.gz -C "$SRC"
    # torch 2.14's headers refuse C++ standards older than C++20 (docs/software_stack.md).
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
    grep -q -- '-std=c++20' "$SRC/mmcv-$MMCV_VERSION/setup.py" \
      || { log "ERROR: could not raise mmcv's C++ standard to C++20"; exit 1; }
    if [[ "$MMCV_OPS" == cuda ]]; then
      BUILD_ENV=(FORCE_CUDA=1 "CUDA_HOME=$BUILD_CUDA_HOME" "TORCH_CUDA_ARCH_LIST=$ARCH_LIST"
                 "PATH=$BUILD_CUDA_HOME/bin:$PATH")
    else
      # MMCV's setup.py builds CUDA ops whenever torch sees a GPU: hide the GPUs.
      BUILD_ENV=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
    fi
    mkdir -p "$WHEEL_DIR"
    (cd "$SRC/mmcv-$MMCV_VERSION" && env "${BUILD_ENV[@]}" MMCV_WITH_OPS=1 \
      MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$VPY" -m pip wheel -q --no-build-isolation --no-deps \
      -w "$WHEEL_DIR.partial" .)
    mv "$WHEEL_DIR.partial"/mmcv-*.whl "$WHEEL_DIR"/ && rmdir "$WHEEL_DIR.partial"
    rm -rf "$SRC"
    log "    mmcv built in $(elapsed "$T")"
  else
    log "    reusing cached mmcv wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  fi
  "${PIP[@]}" -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
  echo "$MMCV_KEY" > "$KEY_FILE"
fi

# 4. cmae_mm with all extras -----------------------------------------------------------
T=$(date +%s)
log "4/4 installing cmae_mm (editable) with extras seg, det, tensorboard, tests under the constraints"
# mmcv is already installed from the wheel above and satisfies the ranges; the
# constraints keep pip from changing torch or anything else verified.
"${PIP[@]}" -q "${CONSTRAINTS[@]}" --no-build-isolation -e "$REPO[all]"
"$VPY" -c 'import mmcv._ext, mmengine, mmpretrain, mmseg, mmdet; print("import check ok: mmcv", mmcv.__version__, "mmpretrain", mmpretrain.__version__, "mmseg", mmseg.__version__, "mmdet", mmdet.__version__)'
if [[ "$MMCV_OPS" == cuda ]]; then
  # mmcv.ops.get_compiling_cuda_version() must be torch's CUDA ('not available': CPU ops)
  if ! PROBLEM=$("${CUDA_ENV[@]}" check-mmcv 2>&1); then
    log "ERROR: $PROBLEM, after installing $MMCV_KEY. Remove $WHEEL_DIR and run"
    log "       bash tools/setup_env.sh --force; or set CMAE_MM_MMCV_OPS=cpu for CPU ops."
    exit 1
  fi
  log "    mmcv CUDA ops verified: compiled with CUDA $TORCH_CUDA for $ARCH_LIST"
fi
log "    done ($(elapsed "$T"))"

want_stamp > "$STAMP"
log "environment ready in $(elapsed "$T0"): $VENV"
