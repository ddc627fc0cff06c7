#!/usr/bin/env bash
# Distributed testing with torchrun:  bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [ARGS...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT as in tools/dist_train.sh.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [ARGS...]" >&2; exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-python}
[[ -x "$REPO/.venv/bin/python" && -z "${VIRTUAL_ENV:-}" ]] && PYTHON="$REPO/.venv/bin/python"

PYTHONPATH="$REPO:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" \
  --master_port="$PORT" \
  --nproc_per_node="$GPUS" \
  "$REPO/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
