#!/bin/bash
# Runs on the GPU machine from the repository root: the record run of issue 6. GPU tests, then
# `apr bench` (pp512 and tg128 with -r 5, tg128 at 32 parallel sequences with -r 2) on synth
# Q4_K_M models of the qwen2.5 presets, then compute-sanitizer memcheck and racecheck on the
# staged kernels. Usage:
#   tools/device/measure_all.sh BINARIES [FALLBACK]
# BINARIES holds apr, cuda_kernels_test, cuda_mma_test and cuda_backend_test built on the
# development machine (build-dev, .carry/); when its kernel tests fail, FALLBACK's binaries (an
# earlier build) are measured instead and the summary says so. The source directory compiled
# into the tests is expected at /work/main. Results: $OUT/summary.txt and $OUT/bench-*.json.
set -u
C=$1 FALLBACK=${2:-}
R=$OUT/summary.txt
mkdir -p /tmp/models
( for m in 0.5b 1.5b 7b 32b; do $C/apr synth qwen2.5-$m -o /tmp/models/$m.gguf --type q4_k_m >/dev/null 2>&1; touch /tmp/$m.done; done ) &
ln -sfn "$PWD" /work/main 2>/dev/null; mkdir -p build-dev
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$R"
if ! $C/cuda_kernels_test --gtest_brief=1 > "$OUT/kernels-first.log" 2>&1 && [ -n "$FALLBACK" ]; then
  echo "kernel tests of $C failed: measuring $FALLBACK" >> "$R"
  grep -B3 "FAILED\|Failure" "$OUT/kernels-first.log" | head -30 >> "$R"
  C=$FALLBACK
fi
echo "binaries: $C" >> "$R"
cp $C/apr build-dev/apr
$C/cuda_kernels_test --gtest_brief=1 2>&1 | tail -2 >> "$R"
$C/cuda_mma_test --gtest_brief=1 2>&1 | tail -3 >> "$R"
while [ ! -f /tmp/0.5b.done ]; do sleep 1; done
REALIZAR_TEST_MODEL=/tmp/models/0.5b.gguf $C/cuda_backend_test --gtest_brief=1 2>&1 |
  grep -v "^\[ *OK\|^\[ RUN" | grep -i "fail\|passed\|tests" | tail -4 >> "$R"
cat "$R"
for m in 7b 32b 1.5b 0.5b; do
  while [ ! -f /tmp/$m.done ]; do sleep 1; done
  echo "== $m" >> "$R"
  $C/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 5 --json "$OUT/bench-$m.json" 2>&1 | grep "pp512\|tg128" >> "$R"
  [ $m != 0.5b ] && $C/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 2 --parallel 32 \
    --json "$OUT/bench-$m-x32.json" 2>&1 | grep "x32" >> "$R"
  tail -3 "$R"
done
timeout 60 compute-sanitizer --tool memcheck $C/cuda_kernels_test --gtest_filter='*Attention*:*Argmax*:*SwiGlu*:*Norm*' 2>&1 | tail -2 >> "$R"
timeout 90 compute-sanitizer --tool racecheck $C/cuda_kernels_test --gtest_filter='*Attention*' 2>&1 | tail -2 >> "$R"
timeout 60 compute-sanitizer --tool racecheck $C/cuda_mma_test --gtest_filter='*Q4_K_3584x3584_t32*:*Q6_K_21x4864*:*Q8_0_71x896*' 2>&1 | tail -2 >> "$R"
tail -6 "$R"
