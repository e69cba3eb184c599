#!/usr/bin/env bash
# Builds the GGUF reader fuzzer (libFuzzer + ASan + UBSan) into build-fuzz/gguf_fuzz and prepares
# a seed corpus from the committed malformed files and valid files. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build-fuzz/corpus
clang++ -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude -Isrc fuzz/gguf_fuzz.cpp src/gguf/*.cpp src/quant/tensor_type.cpp \
  -lfmt -o build-fuzz/gguf_fuzz
cp tests/data/gguf/malformed/*.gguf tests/data/gguf/valid/*.gguf build-fuzz/corpus/
echo "built build-fuzz/gguf_fuzz; run: build-fuzz/gguf_fuzz -max_total_time=300 build-fuzz/corpus"
