#!/usr/bin/env bash
# One idempotent set-up of cmae_mm's environment (docs/installation.md,
# docs/software_stack.md), with the exact versions of requirements/constraints.txt.
#   bash tools/setup_env.sh [--profile full|demo] [--force | --check]
# (--check: say whether the profile is installed and up to date, install nothing; exit 1
# when not)
# Two profiles; the stamp file ($VENV/.cmae_mm_stamp: profile and a hash of what decides
# the set-up) records which one is installed, and full satisfies demo:
#   full (default; tools/run_tests.sh, everything):
#     1. a git-ignored virtual environment in <repo>/.venv (override: CMAE_MM_VENV);
#     2. torch + torchvision, pinned together (constraints);
#     3. mmcv 2.1.0 with compiled ops, built once from its PyPI source distribution with
#        the C++20 change applied here, and cached as a wheel outside the repo
#        (CMAE_MM_CACHE, default ~/.cache/cmae_mm) keyed by mmcv/torch/python versions
#        and the ops: CPU ops (key ..._cpu), or on a GPU machine CUDA ops (key
#        ..._cu130_sm80-90_ptx90) built with an nvcc matching torch's CUDA (a toolkit,
#        else NVIDIA's compiler packages from PyPI) for TORCH_CUDA_ARCH_LIST (default:
#        A100, H100 and the visible GPUs), verified after the install; the decisions are
#        cmae_mm/engine/cuda_env.py's (docs/installation.md, "GPU machines"); it
#        replaces a demo profile's mmcv without ops;
#     4. cmae_mm itself, editable, with all extras ([seg], [det], [tensorboard],
#        [tests]) under the constraints: install_requires gives ranges, the constraints
#        file the versions.
#   demo (tools/demo.sh; a few minutes from a warm pip cache, mostly torch): step 1, then
#     2. torch + torchvision and every other dependency of cmae_mm (but mmcv) and of
#        the demo (requirements/demo.txt: scikit-image), with the build tools
#        (requirements/build.txt) for the editable install, in one pip call, no .pyc
#        (the venv's own pip, not upgraded: any pip >= 22.2 does);
#     3. meanwhile, mmcv 2.1.0 WITHOUT compiled ops, installed as the distribution
#        `mmcv` (built once in under a minute and cached by tools/install_mmcv_noops.sh,
#        which says why); an mmcv 2.1.0 already there, with ops, is kept: no downgrade;
#     4. cmae_mm, editable, without extras; an import check, then pip check.
# Running it again when nothing changed takes about a second.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CMAE_MM_VENV:-$REPO/.venv}"
CACHE="${CMAE_MM_CACHE:-$HOME/.cache/cmae_mm}"
PY="${CMAE_MM_PYTHON:-python3}"
MMCV_VERSION=2.1.0
STAMP="$VENV/.cmae_mm_stamp"

log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

PROFILE=full
FORCE=0
CHECK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) FORCE=1 ;;
    --check) CHECK=1 ;;
    --profile) PROFILE="${2:-}"; shift ;;
    --profile=*) PROFILE="${1#--profile=}" ;;
    *) log "ERROR: unknown argument '$1'. Usage: bash tools/setup_env.sh [--profile full|demo] [--force | --check]"
       exit 2 ;;
  esac
  shift
done
if [[ "$PROFILE" != full && "$PROFILE" != demo ]]; then
  log "ERROR: unknown profile '$PROFILE': use --profile full (everything, the default) or"
  log "       --profile demo (pretraining demo only, MMCV without compiled ops)"
  exit 2
fi

want_stamp() {  # "<profile> <hash>": what is installed, and what decided it
  { echo "$1"
    cat "$REPO"/requirements/*.txt "$REPO/setup.py" "$REPO/tools/setup_env.sh"
    if [[ "$1" == full ]]; then
      cat "$REPO/cmae_mm/engine/cuda_env.py"
      # the machine's GPUs and the build choices: a venv reused on a GPU node (a shared
      # home directory) is checked again there
      ls /proc/driver/nvidia/gpus 2>/dev/null || true
      echo "${TORCH_CUDA_ARCH_LIST:-}|${CMAE_MM_MMCV_OPS:-}|${CUDA_HOME:-}"
    else
      cat "$REPO/tools/install_mmcv_noops.sh"
    fi
  } | sha256sum | cut -c1-16 | sed "s/^/$1 /"
}

HAVE=$(cat "$STAMP" 2>/dev/null || true)
if [[ $CHECK -eq 1 ]]; then
  log "stamp wanted:    $(want_stamp "$PROFILE")$([[ "$PROFILE" == demo ]] \
    && echo " (or $(want_stamp full), which includes it)")"
  log "stamp installed: ${HAVE:-none} ($STAMP)"
  if [[ "$HAVE" == "$(want_stamp full)" || "$HAVE" == "$(want_stamp "$PROFILE")" ]]; then
    log "the $PROFILE profile is installed and up to date (${HAVE%% *} profile): $VENV"
    exit 0
  fi
  log "the $PROFILE profile is NOT installed or out of date: bash tools/setup_env.sh --profile $PROFILE"
  exit 1
fi
if [[ $FORCE -eq 0 ]]; then
  if [[ "$HAVE" == "$(want_stamp full)" ]]; then
    if [[ "$PROFILE" == demo ]]; then
      log "environment up to date: the full profile is installed (MMCV with compiled ops,"
      log "all extras), which includes all that the demo needs; nothing to install: $VENV"
    else
      log "environment up to date (full profile): $VENV"
    fi
    exit 0
  elif [[ "$PROFILE" == demo && "$HAVE" == "$(want_stamp demo)" ]]; then
    log "environment up to date (demo profile): $VENV"
    exit 0
  fi
fi
if [[ "$PROFILE" == full && "$HAVE" == demo\ * ]]; then
  log "upgrading the demo profile's environment to the full one (MMCV with compiled ops,"
  log "extras seg, det, tensorboard, tests): $VENV"
fi
log "profile $PROFILE"
T0=$(date +%s)

mmcv_installed_kind() {  # "ops" / "noops": mmcv $MMCV_VERSION there; "": none (or another)
  "$VPY" - "$MMCV_VERSION" <<'PYEOF' 2>/dev/null || true
import importlib.metadata as m
import sys
dist = m.distribution('mmcv')  # the metadata only: importing mmcv would import torch
if dist.version == sys.argv[1]:
    ops = any(str(f).startswith('mmcv/_ext') for f in dist.files or ())
    print('ops' if ops else 'noops')
PYEOF
}

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
if [[ "$PROFILE" == full ]]; then  # the demo's set-up takes them in its one call (2.)
  "${PIP[@]}" -q --upgrade pip "${CONSTRAINTS[@]}" -r "$REPO/requirements/build.txt"
fi

# 2. torch + torchvision ---------------------------------------------------------------
T=$(date +%s)
TORCH_PINS=$(grep -E '^(torch|torchvision)==' "$REPO/requirements/constraints.txt" | xargs)
if [[ "$PROFILE" == demo ]]; then
  # Speed (the demo's set-up is timed, docs/installation.md): one pip call for torch and
  # every dependency but mmcv, without compiling .pyc files (Python writes those on the
  # first import, for the modules used), while the mmcv wheel without ops is built in
  # the background (its own throwaway venv: nothing shared with this pip).
  MMCV_HAVE=$(mmcv_installed_kind)
  NOOPS_OUT=$(mktemp)
  if [[ -z "$MMCV_HAVE" ]]; then
    CMAE_MM_CACHE="$CACHE" bash "$REPO/tools/install_mmcv_noops.sh" --wheel-only "$PY" \
      > "$NOOPS_OUT" &
    NOOPS_PID=$!
  fi
  grep -v '^mmcv' "$REPO/requirements/mminstall.txt" > "$NOOPS_OUT.req"
  log "2/4 installing $TORCH_PINS and the other dependencies of cmae_mm and the demo"
  log "    (MMEngine, MMPretrain, scikit-image; requirements/runtime.txt, mminstall.txt, demo.txt)"
  "${PIP[@]}" -q --no-compile "${CONSTRAINTS[@]}" torch torchvision \
    -r "$REPO/requirements/runtime.txt" -r "$NOOPS_OUT.req" -r "$REPO/requirements/demo.txt" \
    -r "$REPO/requirements/build.txt"
else
  log "2/4 installing torch + torchvision ($TORCH_PINS)"
  "${PIP[@]}" -q "${CONSTRAINTS[@]}" torch torchvision
fi
TORCH_VERSION=$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0])')
PY_TAG=$("$VPY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
log "    torch $TORCH_VERSION ready ($(elapsed "$T"))"

# 3. mmcv ------------------------------------------------------------------------
mmcv_with_ops() {  # full profile: compiled ops (CPU, or CUDA on a GPU machine), cached
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
}

mmcv_without_ops() {  # demo profile: pure Python, distribution name `mmcv`
  log "3/4 mmcv $MMCV_VERSION without compiled ops (what pretraining and the demo need)"
  if [[ "$MMCV_HAVE" == ops ]]; then
    log "    mmcv $MMCV_VERSION WITH compiled ops already installed (the full profile's): kept"
    return 0
  elif [[ "$MMCV_HAVE" == noops ]]; then
    log "    mmcv $MMCV_VERSION without compiled ops already installed"
    return 0
  fi
  wait "$NOOPS_PID" || {
    log "ERROR: building mmcv $MMCV_VERSION without ops failed (tools/install_mmcv_noops.sh, above)"
    exit 1
  }
  MMCV_WHEEL=$(tail -1 "$NOOPS_OUT")
  log "    $MMCV_WHEEL ready (built or reused while 2/4 ran; installed in 4/4)"
  rm -f "$KEY_FILE"
}

KEY_FILE="$VENV/.cmae_mm_mmcv_key"
MMCV_OPS=none
MMCV_WHEEL=
if [[ "$PROFILE" == full ]]; then mmcv_with_ops; else mmcv_without_ops; fi

# 4. cmae_mm --------------------------------------------------------------------------
T=$(date +%s)
if [[ "$PROFILE" == demo ]]; then
  log "4/4 installing ${MMCV_WHEEL:+mmcv without ops and }cmae_mm (editable, no extras)"
  # Their dependencies came in 2.: --no-deps spares pip a second resolution, and
  # pip check below proves that nothing is missing.
  "${PIP[@]}" -q --no-compile --no-deps --no-build-isolation ${MMCV_WHEEL:+"$MMCV_WHEEL"} \
    -e "$REPO"
  rm -f "$NOOPS_OUT" "$NOOPS_OUT.req"
  "$VPY" -c 'import mmcv, mmengine, mmpretrain, skimage, cmae_mm; print("import check ok: mmcv", mmcv.__version__, "mmengine", mmengine.__version__, "mmpretrain", mmpretrain.__version__, "cmae_mm", cmae_mm.__version__)'
  "$VPY" -m pip check --disable-pip-version-check >/dev/null \
    || { "$VPY" -m pip check; log "ERROR: broken requirements (above)"; exit 1; }
  log "    done, pip check clean ($(elapsed "$T"))"
  want_stamp demo > "$STAMP"
  log "environment ready in $(elapsed "$T0") (demo profile; bash tools/setup_env.sh upgrades"
  log "it to the full one): $VENV"
  exit 0
fi
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

want_stamp full > "$STAMP"
log "environment ready in $(elapsed "$T0") (full profile): $VENV"
