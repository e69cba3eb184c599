#!/bin/bash
# Runs on the GPU machine from the repository root: the GPU tests, then the real SmolLM2 model on
# CUDA and on the CPU (greedy chat answer and perplexity), with binaries built on the development
# machine in build-dev (-DREALIZAR_NATIVE=OFF) and carried in $1. Usage:
#   tools/device/real_model_check.sh CARRY_DIR MODEL.gguf
# The model (94 MB) exceeds one call's carry limit: earlier calls leave its parts under /root/m.
set -u
C=$1; MODEL=$2
# The tests have the build machine's source dir and apr path compiled in: recreate them.
mkdir -p /work && ln -sfn "$PWD" /work/main && mkdir -p build-dev && cp "$C/apr" build-dev/apr
A=build-dev/apr
TEXT=tests/data/real_model/declaration_of_independence.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for t in device_test cuda_kernels_test cuda_backend_test; do
  echo "== $t"; "$C/$t" --gtest_brief=1 2>&1 | tail -3
done
for d in cuda cpu; do
  echo "== run --device $d"
  $A run "$MODEL" --chat --system "You are a helpful assistant." \
    -p "What is the capital of France?" --temp 0 -n 40 --device $d 2>&1
done
for d in cuda cpu; do
  echo "== perplexity --device $d"
  $A perplexity "$MODEL" "$TEXT" --ctx 128 --device $d 2>&1 | tail -2
done
