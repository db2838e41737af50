#!/usr/bin/env bash
# Every benchmark on one CUDA GPU, in one go (issue 14): sizes chosen to finish in about 8 minutes on one
# H100/H200. Results go to benchmarks/results/cuda/ (or $OUT_DIR); each step's log to $OUT_DIR/logs/.
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine, from anywhere
#   bash benchmarks/gpu_suite.sh --dry-run  # the same steps at tiny sizes on the CPU, into a temporary folder
#                                           # (or $OUT_DIR); torch.compile is disabled (TORCH_COMPILE_DISABLE=1)
#
# Steps (each a `python -m benchmarks.NAME` with its own CLI options, see benchmarks/README.md):
#   throughput  learned factor vs k-NN CDC up to 8M points; network queries/s (paper net 1024x4, rank 16) in
#               fp32, bf16 autocast, torch.compile fp32 and torch.compile + bf16
#   tangent     the eigen step (r x r Gram route) vs SVD/eigh, r = 8, 16, 32, batch 8192
#   optimizer   one RiemannianSGD/Adam step, D = 64 and 3072, batch 512 and 8192, peak memory, large-D case
#   training    training samples/s per setting (fp32, bf16, compile, compile + bf16, auto with its probe) and
#               the default recipe vs a plain uncentred step; speed only (--no-accuracy)
#   accuracy    S8 in R64 at the paper's network size (1024x4, rank 16), N = 100k, 12k steps (the CPU table's
#               step count), both recipes vs tuned k-NN
#   images      Table 1 on images, when benchmarks/images.py exists
#
# A failing step does not stop the suite: the others still run, and the suite exits 1 at the end, naming the
# failed steps. PYTHON (default: python) and STEP_TIMEOUT (seconds per step) can be set from the environment.
set -euo pipefail

usage() { echo "usage: bash benchmarks/gpu_suite.sh [--dry-run]" >&2; exit 2; }
DRY_RUN=0
case "${1:-}" in
  "") ;;
  --dry-run) DRY_RUN=1 ;;
  *) usage ;;
esac
[ "$#" -le 1 ] || usage

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  OUT_DIR="${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_dry.XXXXXX")}"
  STEP_TIMEOUT="${STEP_TIMEOUT:-120}"
  export TORCH_COMPILE_DISABLE=1  # the compiled steps run their code path eagerly: compilation takes minutes on CPU
  export OMP_NUM_THREADS=1        # one thread: tiny ops on a busy small CPU are far slower with more
  THROUGHPUT=(--quick --threads 1 --compile --sizes 1024)
  TANGENT=(--quick --threads 1)
  OPTIMIZER=(--quick --threads 1)
  TRAINING=(--quick --threads 1 --no-accuracy --compile-limit 20)
  ACCURACY=(--quick --threads 1 --recipes centred)
  IMAGES=(--quick --threads 1 --lanczos 1)
else
  DEVICE=cuda
  OUT_DIR="${OUT_DIR:-$ROOT/benchmarks/results/cuda}"
  STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
  THROUGHPUT=(--compile)  # CUDA defaults: N = 16k ... 8M, 8,192 queries, k = 64, rate at batch 65,536
  TANGENT=()              # CUDA defaults: r = 8, 16, 32, batch 8,192
  OPTIMIZER=()            # CUDA defaults: batch 512 and 8,192
  TRAINING=(--no-accuracy --compile-limit 120)  # paper net, batch 1,024, 20 + 200 steps per setting
  ACCURACY=(--sizes 100000 --steps 12000)       # paper net (CUDA default), both recipes, batch 1,024
  IMAGES=(--parts table1 blobs stability --steps 4000 --points 20000)  # UNet (auto) on the GPU
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_suite: torch.cuda.is_available() is False; use --dry-run on a CPU machine" >&2; exit 2; }
fi
mkdir -p "$OUT_DIR/logs"
echo "gpu_suite: device $DEVICE, results in $OUT_DIR, at most ${STEP_TIMEOUT}s per step$([ "$DRY_RUN" = 1 ] && echo ', dry run')"

FAILED=()
SUITE_START=$(date +%s)

# run_step NAME -- python -m benchmarks.NAME --device DEVICE --out OUT_DIR ARGS...; it must write OUT_DIR/NAME.json
run_step() {
  local name="$1"; shift
  local log="$OUT_DIR/logs/$name.log" start end status=0
  start=$(date +%s)
  echo "--- [$name] $PYTHON -m benchmarks.$name --device $DEVICE --out $OUT_DIR $*"
  timeout --signal=TERM --kill-after=10 "$STEP_TIMEOUT" \
    "$PYTHON" -m "benchmarks.$name" --device "$DEVICE" --out "$OUT_DIR" "$@" >"$log" 2>&1 || status=$?
  end=$(date +%s)
  if [ "$status" = 0 ] && [ -s "$OUT_DIR/$name.json" ] && [ -s "$OUT_DIR/$name.md" ]; then
    echo "    [$name] ok in $((end - start)) s -> $OUT_DIR/$name.md"
  else
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
      echo "    [$name] FAILED: timed out after ${STEP_TIMEOUT} s (log: $log)"
    elif [ "$status" = 0 ]; then
      echo "    [$name] FAILED: exit 0 but no $name.json / $name.md was written (log: $log)"
    else
      echo "    [$name] FAILED: exit $status after $((end - start)) s (log: $log); its last lines:"
    fi
    tail -n 15 "$log" | sed 's/^/      /'
    FAILED+=("$name")
  fi
}

run_step throughput "${THROUGHPUT[@]}"
run_step tangent "${TANGENT[@]}"
run_step optimizer "${OPTIMIZER[@]}"
run_step training "${TRAINING[@]}"
run_step accuracy "${ACCURACY[@]}"
if [ -f benchmarks/images.py ]; then
  run_step images "${IMAGES[@]}"
else
  echo "--- [images] skipped: benchmarks/images.py does not exist yet"
fi

echo "gpu_suite: done in $(( $(date +%s) - SUITE_START )) s; results in $OUT_DIR"
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "gpu_suite: ${#FAILED[@]} step(s) failed: ${FAILED[*]}" >&2
  exit 1
fi
echo "gpu_suite: every step succeeded"
