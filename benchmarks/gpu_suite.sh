#!/usr/bin/env bash
# Every benchmark on one CUDA GPU, in one go (issue 14). On the first H200 run the steps took 18 s to 160 s
# each, about 11 minutes for all seven: SUITE_BUDGET (540 s) ends the suite inside a lent machine's 10-minute
# command limit, skipping the steps it cannot fit, and SUITE_STEPS runs a chosen few. Results go to
# benchmarks/results/cuda/ (or $OUT_DIR, a relative one read from the caller's folder); each step's log to
# $OUT_DIR/logs/.
#
#   bash benchmarks/gpu_suite.sh            # on the GPU machine, from anywhere
#   bash benchmarks/gpu_suite.sh --dry-run  # the same steps at tiny sizes on the CPU, into a temporary folder
#                                           # (or $OUT_DIR); torch.compile is disabled (TORCH_COMPILE_DISABLE=1)
#
# Steps, in the order they run: issue 14's most wanted figures first (each a `python -m benchmarks.NAME` with its
# own CLI options, see benchmarks/README.md):
#   throughput  network queries/s (paper net 1024x4, rank 16) in fp32, bf16 autocast, torch.compile fp32 and
#               torch.compile + bf16; then the learned factor vs k-NN CDC at 16k, 1M and 8M points
#   tangent     the eigen step (r x r Gram route) vs SVD/eigh, r = 8, 16, 32, batch 8192
#   optimizer   one RiemannianSGD/Adam step, D = 64 and 3072, batch 512 and 8192, peak memory, large-D case
#   training    training samples/s per setting (fp32, bf16, compile, compile + bf16, auto with its probe) and
#               the mean-centred recipes vs a plain uncentred step; speed only (--no-accuracy)
#   images      Table 1 on images: one evaluation of metric matching, Stein and the score Jacobian, UNet presets
#   accuracy    S8 in R64 at the paper's network size (1024x4, rank 16), N = 100k, 6k steps, both recipes vs
#               tuned k-NN, on every host core (--threads $(nproc))
#   unet_speed  one training step of the small-preset UNet at 8x8 and 28x28, NCHW vs channels-last (eager)
#
# A failing step does not stop the suite: the others still run, and the suite exits 1 at the end, naming the
# failed steps. A step's report counts only if this run wrote it: a NAME.json/.md already in $OUT_DIR is moved
# to $OUT_DIR/earlier/<UTC time>/ just before its step runs. From the environment: PYTHON (default: python);
# STEP_TIMEOUT (seconds any one step may take; CUDA: each step has its own cap below it); SUITE_BUDGET (seconds for
# the whole suite, default 540 on CUDA and none on a dry run): a step gets at most what is left of it, and is
# skipped when less is left than the least time worth starting it with (MIN_* below); the summary names the
# skipped steps, and the exit status is 0 when none failed and at least one ran. A step stopped by its cap keeps
# the report it wrote: every step writes it after every row, setting or image size (throughput, tangent, optimizer,
# training, accuracy and unet_speed; images after every row of Table 1, the part the suite runs), and a partial
# report says so in its settings. SUITE_STEPS (names, space-separated; default all; an unknown name is refused
# before anything runs) runs only those steps, in the suite's order.
set -euo pipefail

usage() { echo "usage: bash benchmarks/gpu_suite.sh [--dry-run]" >&2; exit 2; }
DRY_RUN=0
case "${1:-}" in
  "") ;;
  --dry-run) DRY_RUN=1 ;;
  *) usage ;;
esac
[ "$#" -le 1 ] || usage

# the steps, most wanted figures first (issue 14's GPU items, in its order; unet_speed is no item of it)
STEPS=(throughput tangent optimizer training images accuracy unet_speed)
if [ -n "${SUITE_STEPS:-}" ]; then  # refuse a misspelt name before anything runs: it would silently run nothing
  read -r -a WANTED <<<"$SUITE_STEPS"
  UNKNOWN=()
  for want in "${WANTED[@]}"; do [[ " ${STEPS[*]} " == *" $want "* ]] || UNKNOWN+=("$want"); done
  if [ "${#UNKNOWN[@]}" -gt 0 ]; then
    echo "gpu_suite: SUITE_STEPS names no step called: ${UNKNOWN[*]}; the steps are: ${STEPS[*]}" >&2
    exit 2
  fi
fi

# a relative OUT_DIR is the caller's, not the repository root's (the suite works from the root)
case "${OUT_DIR:-}" in
  "" | /*) ;;
  *) OUT_DIR="$PWD/$OUT_DIR" ;;
esac
if [ "$DRY_RUN" = 1 ] && [ -z "${OUT_DIR:-}" ]; then
  OUT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_dry.XXXXXX")"
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
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
  IMAGES=(--parts table1)  # Table 1; blobs (three UNet trainings) runs apart: images --device cuda --parts blobs
  # paper net (CUDA default), both recipes, batch 1,024; its CPU-side work (k-NN eigen fallback for k > 32, batch
  # reading) on every core of the host, not accuracy's CPU default of one thread
  ACCURACY=(--sizes 100000 --steps 6000 --threads "$(nproc)")
  UNET=(--eager-only --batch 256 --repeats 5)    # the small-preset UNet step at 8x8 and 28x28, NCHW and NHWC
  SUITE_BUDGET="${SUITE_BUDGET:-540}"
  # Each step's cap and the least time worth starting it with (seconds). Caps from the first H200 run
  # (2026-12-04: optimizer 18 s, training 160 s with three recipe rounds, Table 1 118 s; throughput and tangent
  # ran out of theirs). The caps of the first five add up to 530 s, inside the budget; accuracy (one recipe at
  # N = 100k takes about 2 minutes) and unet_speed run only on what they leave. Every step writes its report
  # after every row (or setting, or image size), so a cut keeps what it finished; the minimum is the time its
  # first rows need (images keeps nearly its whole cap all the same: Table 1 is issue 9's figure, and its rows
  # at FFHQ-256 size come last).
  CAP_throughput=150 MIN_throughput=60    # the network's rates (compiles included) come first
  CAP_tangent=90     MIN_tangent=40       # rank 8 first
  CAP_optimizer=40   MIN_optimizer=20     # the large case first, then the sweep
  CAP_training=120   MIN_training=50      # the precision/compile settings; then the recipe rounds
  CAP_images=130     MIN_images=120
  CAP_accuracy=200   MIN_accuracy=130
  CAP_unet_speed=60  MIN_unet_speed=30    # 8x8 first, then 28x28
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_suite: torch.cuda.is_available() is False; use --dry-run on a CPU machine" >&2; exit 2; }
fi
mkdir -p "$OUT_DIR/logs"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"  # printed and passed as an absolute path
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
EARLIER="$OUT_DIR/earlier/$STAMP"  # where reports found in OUT_DIR before their step runs are moved
echo "gpu_suite: device $DEVICE, results in $OUT_DIR, at most ${STEP_TIMEOUT}s per step$([ -n "${SUITE_BUDGET:-}" ] \
  && echo " and ${SUITE_BUDGET}s in all")$([ "$DRY_RUN" = 1 ] && echo ', dry run')"

OK=() FAILED=() SKIPPED=()
SUITE_START=$(date +%s)

# run_step NAME -- python -m benchmarks.NAME --device DEVICE --out OUT_DIR ARGS...; it must write OUT_DIR/NAME.json
# and .md. A report already there is moved to $EARLIER first, so that only a report written by this run counts.
run_step() {
  local name="$1"; shift
  if [ -n "${SUITE_STEPS:-}" ] && [[ " $SUITE_STEPS " != *" $name "* ]]; then
    echo "--- [$name] not run (not in SUITE_STEPS)"; return
  fi
  local log="$OUT_DIR/logs/$name.log" start end status=0 cap_var="CAP_$name" min_var="MIN_$name" limit left need
  limit="${!cap_var:-$STEP_TIMEOUT}"
  [ "$limit" -le "$STEP_TIMEOUT" ] || limit="$STEP_TIMEOUT"
  if [ -n "${SUITE_BUDGET:-}" ]; then
    left=$((SUITE_START + SUITE_BUDGET - $(date +%s)))
    need="${!min_var:-20}"
    if [ "$left" -lt "$need" ]; then
      echo "--- [$name] skipped: it needs at least ${need} s, ${left} s are left of SUITE_BUDGET=${SUITE_BUDGET} s"
      SKIPPED+=("$name"); return
    fi
    [ "$limit" -le "$left" ] || limit="$left"
  fi
  local old=()
  for f in "$OUT_DIR/$name.json" "$OUT_DIR/$name.md"; do [ ! -e "$f" ] || old+=("$f"); done
  if [ "${#old[@]}" -gt 0 ]; then
    mkdir -p "$EARLIER" && mv "${old[@]}" "$EARLIER/"
    echo "--- [$name] moved the earlier $name.json/.md to $EARLIER (only a report this run writes counts)"
  fi
  start=$(date +%s)
  echo "--- [$name] $PYTHON -m benchmarks.$name --device $DEVICE --out $OUT_DIR $* (at most ${limit} s)"
  timeout --signal=TERM --kill-after=10 "$limit" \
    "$PYTHON" -m "benchmarks.$name" --device "$DEVICE" --out "$OUT_DIR" "$@" >"$log" 2>&1 || status=$?
  end=$(date +%s)
  if [ "$status" = 0 ] && [ -s "$OUT_DIR/$name.json" ] && [ -s "$OUT_DIR/$name.md" ]; then
    echo "    [$name] ok in $((end - start)) s -> $OUT_DIR/$name.md"
    OK+=("$name")
  else
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
      echo "    [$name] FAILED: timed out after ${limit} s (log: $log); $([ -s "$OUT_DIR/$name.json" ] \
        && echo "the partial report it wrote before then is kept" || echo "it wrote no report")"
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
run_step images "${IMAGES[@]}"
run_step accuracy "${ACCURACY[@]}"
run_step unet_speed "${UNET[@]}"

echo "gpu_suite: done in $(( $(date +%s) - SUITE_START )) s; results in $OUT_DIR"
[ "${#OK[@]}" = 0 ] || echo "gpu_suite: ok: ${OK[*]}"
if [ "${#SKIPPED[@]}" -gt 0 ]; then
  echo "gpu_suite: ${#SKIPPED[@]} step(s) skipped for lack of time (SUITE_BUDGET=${SUITE_BUDGET} s): ${SKIPPED[*]};" \
    "run them apart with SUITE_STEPS=\"${SKIPPED[*]}\""
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "gpu_suite: ${#FAILED[@]} step(s) failed: ${FAILED[*]}" >&2
  exit 1
fi
if [ "${#OK[@]}" = 0 ]; then
  echo "gpu_suite: no step ran" >&2
  exit 1
elif [ "${#SKIPPED[@]}" -gt 0 ]; then
  echo "gpu_suite: every step that ran succeeded"
else
  echo "gpu_suite: every step succeeded"
fi
