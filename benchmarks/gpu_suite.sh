#!/usr/bin/env bash
# Every benchmark on one CUDA GPU, in one go (issue 14). On the first H200 run the steps took 18 s to 160 s
# each, about 11 minutes for all seven: SUITE_BUDGET (540 s) ends the suite inside a lent machine's 10-minute
# command limit, skipping the steps it cannot fit, and SUITE_STEPS runs a chosen few. Results go to
# benchmarks/results/cuda/ (or $OUT_DIR); each step's log to $OUT_DIR/logs/.
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine, from anywhere
#   bash benchmarks/gpu_suite.sh --dry-run  # the same steps at tiny sizes on the CPU, into a temporary folder
#                                           # (or $OUT_DIR); torch.compile is disabled (TORCH_COMPILE_DISABLE=1)
#
# Steps, in the order they run (each a `python -m benchmarks.NAME` with its own CLI options, see
# benchmarks/README.md):
#   throughput  learned factor vs k-NN CDC up to 8M points; network queries/s (paper net 1024x4, rank 16) in
#               fp32, bf16 autocast, torch.compile fp32 and torch.compile + bf16
#   tangent     the eigen step (r x r Gram route) vs SVD/eigh, r = 8, 16, 32, batch 8192
#   optimizer   one RiemannianSGD/Adam step, D = 64 and 3072, batch 512 and 8192, peak memory, large-D case
#   unet_speed  one training step of the small-preset UNet at 8x8 and 28x28, NCHW vs channels-last (eager)
#   accuracy    S8 in R64 at the paper's network size (1024x4, rank 16), N = 100k, 6k steps, both recipes vs
#               tuned k-NN (the log prints each row as it is done)
#   training    training samples/s per setting (fp32, bf16, compile, compile + bf16, auto with its probe) and
#               the mean-centred recipes vs a plain uncentred step; speed only (--no-accuracy)
#   images      Table 1 on images: one evaluation of metric matching, Stein and the score Jacobian, UNet presets
#
# A failing step does not stop the suite: the others still run, and the suite exits 1 at the end, naming the
# failed steps. From the environment: PYTHON (default: python); STEP_TIMEOUT (seconds any one step may take;
# CUDA: each step has its own cap below it); SUITE_BUDGET (seconds for the whole suite, default 540 on CUDA and
# none on a dry run): a step gets at most what is left of it and is skipped when under 20 s is left, so the
# suite ends inside a lent machine's command limit. A step stopped by its cap keeps any report it wrote.
# SUITE_STEPS (names, space-separated; default all) runs only those steps, in the suite's order.
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
  STEP_TIMEOUT="${STEP_TIMEOUT:-240}"  # a hang guard: images (every part, Table 1 a process per method) took 82 s at load 6
  export TORCH_COMPILE_DISABLE=1  # the compiled steps run their code path eagerly: compilation takes minutes on CPU
  export OMP_NUM_THREADS=1        # one thread: tiny ops on a busy small CPU are far slower with more
  THROUGHPUT=(--quick --threads 1 --compile --sizes 1024)
  TANGENT=(--quick --threads 1)
  OPTIMIZER=(--quick --threads 1)
  TRAINING=(--quick --threads 1 --no-accuracy --compile-limit 20 --rounds 1)  # one recipe round: the code path, not a figure
  ACCURACY=(--quick --threads 1 --recipes centred)
  UNET=(--threads 1 --eager-only --batch 4 --repeats 2)
  IMAGES=(--quick --threads 1 --lanczos 2)  # the fewest Lanczos steps allowed: one gives Euclidean draws
else
  DEVICE=cuda
  OUT_DIR="${OUT_DIR:-$ROOT/benchmarks/results/cuda}"
  STEP_TIMEOUT="${STEP_TIMEOUT:-300}"
  THROUGHPUT=(--compile --sizes 16384 1048576 8388608)  # 8,192 queries, k = 64, rates at batch 65,536 first
  TANGENT=()              # CUDA defaults: r = 8, 16, 32, batch 8,192
  OPTIMIZER=()            # CUDA defaults: batch 512 and 8,192
  TRAINING=(--no-accuracy --compile-limit 60)   # paper net, batch 1,024, 20 + 200 steps per setting
  UNET=(--eager-only --batch 256 --repeats 5)    # the small-preset UNet step at 8x8 and 28x28, NCHW and NHWC
  IMAGES=(--parts table1)  # Table 1; blobs (three UNet trainings) runs apart: images --device cuda --parts blobs
  ACCURACY=(--sizes 100000 --steps 6000)         # paper net (CUDA default), both recipes, batch 1,024
  SUITE_BUDGET="${SUITE_BUDGET:-540}"
  # each step's cap (seconds), from the first H200 run (2026-12-04: optimizer 18 s, training 160 s, Table 1
  # 118 s). All seven take about 11 minutes there, so a 540 s budget skips the last ones: SUITE_STEPS picks.
  CAP_throughput=150 CAP_tangent=60 CAP_optimizer=40 CAP_unet_speed=60 CAP_accuracy=200 CAP_training=220
  CAP_images=150
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_suite: torch.cuda.is_available() is False; use --dry-run on a CPU machine" >&2; exit 2; }
fi
mkdir -p "$OUT_DIR/logs"
echo "gpu_suite: device $DEVICE, results in $OUT_DIR, at most ${STEP_TIMEOUT}s per step$([ -n "${SUITE_BUDGET:-}" ] \
  && echo " and ${SUITE_BUDGET}s in all")$([ "$DRY_RUN" = 1 ] && echo ', dry run')"

FAILED=()
SUITE_START=$(date +%s)

# run_step NAME -- python -m benchmarks.NAME --device DEVICE --out OUT_DIR ARGS...; it must write OUT_DIR/NAME.json
run_step() {
  local name="$1"; shift
  if [ -n "${SUITE_STEPS:-}" ] && [[ " $SUITE_STEPS " != *" $name "* ]]; then
    echo "--- [$name] not run (not in SUITE_STEPS)"; return
  fi
  local log="$OUT_DIR/logs/$name.log" start end status=0 cap_var="CAP_$name" limit left
  limit="${!cap_var:-$STEP_TIMEOUT}"
  [ "$limit" -le "$STEP_TIMEOUT" ] || limit="$STEP_TIMEOUT"
  if [ -n "${SUITE_BUDGET:-}" ]; then
    left=$((SUITE_START + SUITE_BUDGET - $(date +%s)))
    if [ "$left" -lt 20 ]; then
      echo "--- [$name] FAILED: skipped, ${left} s left of SUITE_BUDGET=${SUITE_BUDGET} s"
      FAILED+=("$name"); return
    fi
    [ "$limit" -le "$left" ] || limit="$left"
  fi
  start=$(date +%s)
  echo "--- [$name] $PYTHON -m benchmarks.$name --device $DEVICE --out $OUT_DIR $* (at most ${limit} s)"
  timeout --signal=TERM --kill-after=10 "$limit" \
    "$PYTHON" -m "benchmarks.$name" --device "$DEVICE" --out "$OUT_DIR" "$@" >"$log" 2>&1 || status=$?
  end=$(date +%s)
  if [ "$status" = 0 ] && [ -s "$OUT_DIR/$name.json" ] && [ -s "$OUT_DIR/$name.md" ]; then
    echo "    [$name] ok in $((end - start)) s -> $OUT_DIR/$name.md"
  else
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
      echo "    [$name] FAILED: timed out after ${limit} s (log: $log)$([ -s "$OUT_DIR/$name.json" ] \
        && echo "; the report it wrote before then is kept")"
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
run_step unet_speed "${UNET[@]}"
run_step accuracy "${ACCURACY[@]}"
run_step training "${TRAINING[@]}"
run_step images "${IMAGES[@]}"

echo "gpu_suite: done in $(( $(date +%s) - SUITE_START )) s; results in $OUT_DIR"
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "gpu_suite: ${#FAILED[@]} step(s) failed: ${FAILED[*]}" >&2
  exit 1
fi
echo "gpu_suite: every step succeeded"
