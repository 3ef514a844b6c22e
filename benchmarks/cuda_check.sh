#!/usr/bin/env bash
# One prepared check of the CUDA path on a GPU machine: the CUDA tests, the epoch
# benchmark on the GPU, then the whole suite with `device: auto` resolving to the GPU.
#
#   bash benchmarks/cuda_check.sh [LOG_DIR]
#
# Each step has its own time limit so that one slow step still leaves the others' results.
# Set REGBENCH_EXTRA_SITE to a folder of extra packages to put on the path (e.g. pydantic
# where the machine lacks it).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${1:-.}
export PYTHONPATH="${REGBENCH_EXTRA_SITE:+$REGBENCH_EXTRA_SITE:}$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c "import torch, regbench; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

echo "== CUDA tests"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$LOG_DIR/cuda_tests.log" | tail -40

echo "== worker processes pinned to the GPUs (--gpus, train.runs_per_gpu)"
gpus=$($PY -c "import torch; print(','.join(map(str, range(torch.cuda.device_count()))))")
timeout 120 $PY -m regbench run configs/smoke/digits.yaml --out "$LOG_DIR/gpus" --fresh --no-report \
  --fuse off --gpus "$gpus" --set train.runs_per_gpu=2 2>&1 | tail -3
grep -h '"status"' "$LOG_DIR"/gpus/*/runs/*/summary.json | sort | uniq -c   # (which GPU each
# process saw is tests/test_gpus.py's; here: the pinned processes train on CUDA and complete)

echo "== epoch benchmark on the GPU"
timeout 170 $PY benchmarks/epoch_overhead.py --device cuda --rounds 5 2>&1 | tee "$LOG_DIR/bench_cuda.log"

echo "== the whole suite, device auto = cuda"
timeout "${SUITE_SECONDS:-170}" $PY -m pytest -q -rfE --tb=short -p no:cacheprovider -n 12 -k "not ray" 2>&1 \
  | tee "$LOG_DIR/suite.log" | grep -E "^(FAILED|ERROR)|passed|failed" | head -40
