#!/usr/bin/env bash
# The test command of the README and of CI: installs dependencies, builds (with the CUDA code when
# nvcc is present), runs every test, then runs the GGUF tests (the reader's, and `apr inspect` on
# the malformed corpus) and the HTTP server's suite again under ASan/UBSan.
# GPU tests (label "gpu") skip themselves when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

tools/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build -j "$jobs" --output-on-failure

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DREALIZAR_SANITIZE=ON \
      -DREALIZAR_CUDA=OFF -DREALIZAR_BENCH=OFF
cmake --build build-asan -j "$jobs" --target apr gguf_test gguf_split_test inspect_test
ctest --test-dir build-asan -j "$jobs" --output-on-failure -R '^Gguf'
# The server's suite against the sanitized apr, on the tiny synth models only (the real-model test
# is too slow unoptimised): bad input, disconnects and the soak must leave no sanitizer report.
APR=build-asan/apr REALIZAR_SOURCE_DIR="$PWD" python3 -m pytest -q -k "not smollm2" \
  tests/python/test_serve_errors.py tests/python/test_serve_soak.py tests/python/test_serve_openai.py
