#!/bin/bash
# Runs on the GPU machine from the repository root: per-kernel GPU time of one decode step (and of
# the start of a prefill) under Nsight Compute, graphs off, so that the time of each kernel
# family can be compared with its bytes. Usage:
#   tools/device/profile_kernels.sh CARRY_DIR decode MODEL [CONTEXT] | prefill MODEL [KERNELS]
#                                   | parallel MODEL [SEQUENCES] | mixed MODEL [MAX_BATCH_TOKENS]
# (parallel: one decode step of SEQUENCES sequences, default 32, each after a 64-token prompt;
#  mixed: the serving workload of `apr bench engine` at 32 concurrent 512/128 requests and a step
#  budget, default 160, profiled for ~10 steps from 60 % of its kernels on, past the first wave of
#  prompts: decode rows and prompt chunks in one step)
# MODEL names a synth preset (0.5b, 1.5b, 7b, 32b), made under /tmp/models if missing.
# Summaries go to stdout and $OUT/profile-*.csv.
set -eu
C=$1 MODE=$2 M=$3
mkdir -p /tmp/models "${OUT:-/tmp}"
[ -f /tmp/models/$M.gguf ] || $C/apr synth qwen2.5-$M -o /tmp/models/$M.gguf --type q4_k_m >/dev/null
NCU="ncu --clock-control none --cache-control none --csv --page raw --print-units base
     --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread"
CSV=${OUT:-/tmp}/profile-$MODE-$M-${4:-}.csv
if [ "$MODE" = decode ]; then
  CONTEXT=${4:-64}
  # -p 0: the warm-up "prompt" is one token, so every step is a 1-token step. Profile two steps
  # around position CONTEXT; the summary takes the kernels between two embedding lookups.
  PER_STEP=$(REALIZAR_CUDA_GRAPH_STATS=1 $C/apr bench /tmp/models/$M.gguf --device cuda -p 0 -n 2 -r 1 2>&1 |
             sed -n 's/.*: 1 tokens (.*), \([0-9]*\) nodes.*/\1/p' | head -1)
  REALIZAR_CUDA_GRAPHS=0 $NCU --launch-skip $((CONTEXT * PER_STEP)) --launch-count $((2 * PER_STEP + 10)) \
    --log-file "$CSV" $C/apr bench /tmp/models/$M.gguf --device cuda -p 0 -n $((CONTEXT + 4)) -r 1 >/dev/null 2>&1
elif [ "$MODE" = parallel ]; then
  # The kernels before the third parallel step: the warm-up prompt and 4 one-token steps, the pp64
  # run, one 64-token prefill per sequence and two parallel steps. Graph node counts (a graph with
  # outputs also holds one copy node) give the kernel counts.
  N=${4:-32}
  ARGS="--device cuda -p 64 -n 4 -r 1 --parallel $N"
  STATS=$(REALIZAR_CUDA_GRAPH_STATS=1 $C/apr bench /tmp/models/$M.gguf $ARGS 2>&1)
  kernels() { echo "$STATS" | sed -n "s/.*: $1 tokens (.*), \([0-9]*\) nodes.*/\1/p" | head -1; }
  K1=$(( $(kernels 1) - 1 )) K64=$(( $(kernels 64) - 1 )) KN=$(( $(kernels $N) - 1 ))
  REALIZAR_CUDA_GRAPHS=0 $NCU --launch-skip $(( (N + 2) * K64 + 4 * K1 + 2 * KN - 5 )) --launch-count $((KN + 20)) \
    --log-file "$CSV" $C/apr bench /tmp/models/$M.gguf $ARGS >/dev/null 2>&1
  MODE=decode
elif [ "$MODE" = mixed ]; then
  ARGS="engine /tmp/models/$M.gguf --device cuda --parallel 32 --ctx 1024 --requests 128 --concurrency 32
        --prompt-len 512 --output-len 128 --max-batch-tokens ${4:-160}"
  # 128 requests of 640 tokens in steps of the budget, a mixed step ~17 kernels a layer.
  case $M in 0.5b) LAYERS=24 ;; 32b) LAYERS=64 ;; *) LAYERS=28 ;; esac
  PER_STEP=$(( 17 * LAYERS + 10 ))
  STEPS=$(( 128 * 640 / ${4:-160} ))
  REALIZAR_CUDA_GRAPHS=0 $NCU --launch-skip $(( 6 * STEPS * PER_STEP / 10 )) --launch-count $(( 8 * PER_STEP )) \
    --log-file "$CSV" $C/apr bench $ARGS >/dev/null 2>&1
  MODE=steps
else
  REALIZAR_CUDA_GRAPHS=0 $NCU --launch-count ${4:-600} --log-file "$CSV" \
    $C/apr bench /tmp/models/$M.gguf --device cuda -p 512 -n 0 -r 1 >/dev/null 2>&1 || true
fi
python3 tools/device/profile_summary.py "$MODE" "$CSV"
