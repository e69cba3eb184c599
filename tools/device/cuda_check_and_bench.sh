#!/bin/bash
# Runs on the GPU machine, from the repository root, with the binaries built on the development
# machine in .carry/cuda (apr, cuda_kernels_test, cuda_backend_test). Usage:
#   tools/device/cuda_check_and_bench.sh [tests|sanitize|bench|all] [models...]
# models: 0.5b 1.5b 7b 32b (synthetic Qwen2.5 Q4_K_M, made here with apr synth). Logs go to $OUT.
set -u
C=.carry/cuda
OUT=${OUT:-/tmp/cuda-out}
MODE=${1:-all}; shift || true
MODELS=${*:-0.5b 1.5b 7b}
mkdir -p "$OUT" /tmp/models
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"

# The tests have the source dir and apr path of the build machine compiled in: recreate them.
mkdir -p /work/wt && ln -sfn "$PWD" /work/wt/cuda && mkdir -p build-dev && cp $C/apr build-dev/apr

synth() {  # synth MODEL: /tmp/models/MODEL.gguf
  [ -f /tmp/models/$1.gguf ] || $C/apr synth qwen2.5-$1 -o /tmp/models/$1.gguf --type q4_k_m >/dev/null
}

if [ "$MODE" = tests ] || [ "$MODE" = all ]; then
  synth 0.5b
  $C/cuda_kernels_test --gtest_brief=1 2>&1 | tee "$OUT/kernels.log" | tail -15
  REALIZAR_TEST_MODEL=/tmp/models/0.5b.gguf $C/cuda_backend_test --gtest_brief=1 2>&1 |
    tee "$OUT/backend.log" | grep -v "^\[ *OK\|^\[ RUN" | tail -60
fi
if [ "$MODE" = sanitize ]; then
  compute-sanitizer --tool memcheck --leak-check no $C/cuda_kernels_test --gtest_brief=1 \
    --gtest_filter='*Attention*:*Rope*:*Q6_K*:*Q5_0*:*RmsNorm*' 2>&1 | tail -8 | tee "$OUT/memcheck-kernels.log"
  compute-sanitizer --tool memcheck --leak-check no $C/cuda_backend_test --gtest_brief=1 \
    --gtest_filter='*Mixed*:*qwen2_q8_0*:*phi2_f16*' 2>&1 | tail -8 | tee "$OUT/memcheck-backend.log"
fi
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  for m in $MODELS; do synth $m; done
  for m in $MODELS; do
    echo "== qwen2.5-$m q4_k_m"
    $C/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 5 --json "$OUT/bench-$m.json" 2>&1 | tail -4
    if [ "$m" != 0.5b ]; then
      $C/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 2 --parallel 32 \
        --json "$OUT/bench-$m-x32.json" 2>&1 | tail -1
    fi
  done
fi
