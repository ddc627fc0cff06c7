#!/usr/bin/env bash
# Training on a Slurm cluster:
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [ARGS...]
# SIGNAL (default USR1@120): Slurm sends it to every task that long before the time
# limit; PreemptionHook then saves a checkpoint and the tasks exit with 124, as on
# SIGTERM (preemption, scancel). SIGNAL= sends none. Continue with --resume
# (docs/training.md, "Slurm: preemption, time limits, one run per work dir").
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [ARGS...]" >&2; exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
SIGNAL=${SIGNAL-USR1@120}
PREEMPTED=124  # PreemptionHook's exit_code
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-python}
[[ -x "$REPO/.venv/bin/python" && -z "${VIRTUAL_ENV:-}" ]] && PYTHON="$REPO/.venv/bin/python"

status=0
PYTHONPATH="$REPO:${PYTHONPATH:-}" \
srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  --gres=gpu:"$GPUS_PER_NODE" \
  --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  ${SIGNAL:+--signal="$SIGNAL"} \
  $SRUN_ARGS \
  "$PYTHON" -u "$REPO/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "${@:5}" \
  || status=$?
if [[ $status -eq $PREEMPTED ]]; then
  echo "Training stopped by a signal after saving a checkpoint in $WORK_DIR (status" \
    "$PREEMPTED); continue with the same command and --resume." >&2
fi
exit $status
