#!/bin/bash
# Runs on the GPU machine from the repository root, with binaries built on the development machine
# in $C (apr, cuda_kernels_test, cuda_backend_test, cuda_matvec_bench_test). Usage:
#   tools/device/cudaperf_run.sh CARRY_DIR [tests] [mbench] [bench MODELS...]
# Env: SOURCE_DIR, the source directory the binaries were built from (default
# /work/wt/cudaperf); X32=0 skips the parallel-32 runs. Logs under $OUT; the last lines printed
# are a short table and the kernel count of the 1-token decode graph.
set -u
C=$1; shift
FINAL=${OUT:-/tmp/cuda-out}; OUT=/tmp/logs
mkdir -p "$OUT" /tmp/models
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
# The tests have the build machine's source dir and apr path compiled in: recreate them.
SOURCE_DIR=${SOURCE_DIR:-/work/wt/cudaperf}
mkdir -p "$(dirname "$SOURCE_DIR")" && ln -sfn "$PWD" "$SOURCE_DIR" && mkdir -p build-dev && cp $C/apr build-dev/apr
synth() { [ -f /tmp/models/$1.gguf ] || $C/apr synth qwen2.5-$1 -o /tmp/models/$1.gguf --type q4_k_m >/dev/null; }
(synth 0.5b; synth 1.5b; synth 7b; synth 32b) > "$OUT/synth.log" 2>&1 &
SYNTH=$!
DO_TESTS=0; DO_MB=0; MODELS=""
while [ $# -gt 0 ]; do
  case $1 in tests) DO_TESTS=1;; mbench) DO_MB=1;; bench) shift; MODELS="$*"; break;; esac; shift
done
if [ $DO_TESTS = 1 ]; then
  $C/cuda_kernels_test --gtest_brief=1 2>&1 | tee "$OUT/kernels.log" | tail -6
  [ -x $C/cuda_mma_test ] && $C/cuda_mma_test --gtest_brief=1 2>&1 | tee "$OUT/mma.log" | tail -3
  wait $SYNTH
  REALIZAR_TEST_MODEL=/tmp/models/0.5b.gguf $C/cuda_backend_test --gtest_brief=1 2>&1 |
    tee "$OUT/backend.log" | grep -v "^\[ *OK\|^\[ RUN" | grep -i "fail\|error\|passed\|tests" | tail -20
fi
if [ $DO_MB = 1 ]; then
  REALIZAR_CUDA_BENCH=1 $C/cuda_matvec_bench_test 2>&1 | tee "$OUT/mbench.log" | grep -v "^\[" 
fi
wait $SYNTH
for m in $MODELS; do
  REALIZAR_CUDA_GRAPH_STATS=1 $C/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 5 \
    --json "$OUT/bench-$m.json" > "$OUT/bench-$m.log" 2>&1
  if [ "$m" != 0.5b ] && [ "${X32:-1}" != 0 ]; then
    $C/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 2 --parallel 32 --json "$OUT/bench-$m-x32.json" > "$OUT/bench-$m-x32.log" 2>&1
  fi
done
for m in $MODELS; do
  echo "== $m"; grep "cuda graph: 1 tokens" "$OUT/bench-$m.log" | sort -u
  grep -v "^cuda graph" "$OUT/bench-$m.log" | tail -3
  [ -f "$OUT/bench-$m-x32.log" ] && tail -1 "$OUT/bench-$m-x32.log"
done
tar czf "$FINAL/logs.tgz" -C /tmp logs
