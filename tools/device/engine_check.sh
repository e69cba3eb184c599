#!/bin/bash
# Runs on the GPU machine from the repository root: the serving engine's GPU checks and first
# timings. Binaries (apr and the GPU tests, built on the development machine with
# -DREALIZAR_NATIVE=OFF into build-dev) are in $1. The tests have /work/main and
# /work/main/build-dev/apr compiled in: both are recreated here. Results: $OUT/summary.txt, logs.
set -u
C=$1
R=$OUT/summary.txt
TOK=tests/data/tokenizers/qwen2/tokenizer.json
mkdir -p /tmp/models
synth() { $C/apr synth qwen2.5-$1 -o /tmp/models/$1.gguf --type q4_k_m --tokenizer $TOK >/dev/null 2>&1; touch /tmp/$1.done; }
( synth 0.5b; synth 7b ) &
ln -sfn "$PWD" /work/main 2>/dev/null; mkdir -p build-dev; cp $C/apr build-dev/apr
wait_for() { while [ ! -f /tmp/$1.done ]; do sleep 1; done; }
say() { echo "$*" | tee -a "$R"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$R"
say "== sampling tests"
$C/cuda_sampling_test --gtest_brief=1 > "$OUT/sampling.log" 2>&1; tail -3 "$OUT/sampling.log" | tee -a "$R"
grep -B2 -A12 "Failure" "$OUT/sampling.log" | head -60 >> "$R"
say "== memcheck / racecheck / initcheck (sampling)"
F='CudaSampling.Logprobs*:CudaSampling.BadRows*:CudaSampling.Penalties*:CudaSampling.RowResults*'
timeout 120 compute-sanitizer --tool memcheck $C/cuda_sampling_test --gtest_filter="$F" 2>&1 | tail -2 | tee -a "$R"
timeout 120 compute-sanitizer --tool racecheck $C/cuda_sampling_test --gtest_filter='CudaSampling.Logprobs*:CudaSampling.BadRows*' 2>&1 | tail -2 | tee -a "$R"
timeout 120 compute-sanitizer --tool initcheck $C/cuda_sampling_test --gtest_filter='CudaSampling.Logprobs*:CudaSampling.BadRows*' 2>&1 | tail -2 | tee -a "$R"
say "== sampling bench"
REALIZAR_CUDA_BENCH=1 $C/cuda_sampling_test --gtest_filter='CudaSamplingBench.*' 2>&1 | grep -v "^\[" | tee -a "$R"
say "== backend + engine tests"
$C/cuda_backend_test --gtest_brief=1 > "$OUT/backend.log" 2>&1; tail -3 "$OUT/backend.log" | tee -a "$R"
grep -B2 -A10 "Failure" "$OUT/backend.log" | head -40 >> "$R"
$C/cuda_engine_test --gtest_brief=1 > "$OUT/engine.log" 2>&1; tail -3 "$OUT/engine.log" | tee -a "$R"
grep -B2 -A10 "Failure" "$OUT/engine.log" | head -30 >> "$R"
$C/cuda_kernels_test --gtest_brief=1 2>&1 | tail -2 | tee -a "$R"
run() {  # MODEL SAMPLING...: decode speed of apr run (the engine), 256 tokens
  $C/apr run /tmp/models/$1.gguf --device cuda -p "Tell me a long story about the sea." -n 256 --ignore-eos "${@:2}" 2>&1 >/dev/null | grep "generated" | sed "s/^/$1 ${*:2}: /" | tee -a "$R"
}
for m in 0.5b 7b; do
  wait_for $m
  say "== $m apr run: greedy, sampled (device), sampled top-k off (host)"
  run $m --temp 0; run $m --temp 0.8 --top-k 40 --top-p 0.95; run $m --temp 0; run $m --temp 0.8 --top-k 40 --top-p 0.95
  run $m --temp 0.8 --top-k 0 --top-p 0.95
done
tail -40 "$R"
