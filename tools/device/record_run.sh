#!/bin/bash
# Runs on the GPU machine from the repository root: the serving-engine record run (issues 11, 12,
# 13 and the attention part of 15). Binaries built on the development machine with
# -DREALIZAR_NATIVE=OFF into build-dev (apr with libcpp-httplib.so beside it, the GPU tests) are in
# $1; the tests have /work/main and /work/main/build-dev/apr compiled in, both recreated here.
# $2: the models to measure (default "0.5b 1.5b 7b"). Results: $OUT/summary.txt, $OUT/*.json.
set -u
C=$1
MODELS=${2:-"0.5b 1.5b 7b"}
R=$OUT/summary.txt
TOK=tests/data/tokenizers/qwen2/tokenizer.json
mkdir -p /tmp/models
synth() { [ -f /tmp/models/$1.gguf ] || $C/apr synth qwen2.5-$1 -o /tmp/models/$1.gguf --type q4_k_m --tokenizer $TOK >/dev/null 2>&1; touch /tmp/$1.done; }
( for m in $MODELS; do synth $m; done ) &
ln -sfn "$PWD" /work/main 2>/dev/null; mkdir -p build-dev; cp $C/apr $C/libcpp-httplib.so* build-dev/
wait_for() { while [ ! -f /tmp/$1.done ]; do sleep 1; done; }
say() { echo "$*" | tee -a "$R"; }
table() { grep -E "^\| (pp|tg|metric|requests|output|aggregate|TTFT|ITL|TPOT)" | sed "s/^/$1 /" | tee -a "$R"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$R"
ldd $C/apr | grep "not found" | tee -a "$R"

if [ "${TESTS:-1}" = 1 ]; then
  say "== GPU tests"
  for t in cuda_attention_test cuda_backend_test cuda_engine_test cuda_sampling_test; do
    [ -x $C/$t ] || continue
    $C/$t --gtest_brief=1 > "$OUT/$t.log" 2>&1; say "$t: $(tail -4 "$OUT/$t.log" | grep -E 'PASSED|FAILED' | tr '\n' ' ')"
    grep -B3 -A12 "Failure" "$OUT/$t.log" | head -40 >> "$R"
  done
  F='Steps/*head72_group3*:Steps/*mixed_05b*:Steps/*tiles_of_1_7b_split3*:Steps/*decode_15b*:Steps/*group8*:Steps/*head16*'
  for tool in memcheck racecheck initcheck; do
    say "$tool attention: $(timeout 150 compute-sanitizer --tool $tool $C/cuda_attention_test --gtest_filter="$F" 2>&1 | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' | tail -1)"
  done
  say "memcheck backend chunks: $(timeout 150 compute-sanitizer --tool memcheck $C/cuda_backend_test --gtest_filter='*GraphedStepsWithPromptChunks*:*ChunkContinuing*' 2>&1 | grep 'ERROR SUMMARY' | tail -1)"
  REALIZAR_CUDA_BENCH=1 $C/cuda_attention_bench_test 2>&1 | grep -v "^\[" | tee "$OUT/attention_bench.txt" | tail -30 >> "$R"
fi

S="--temp 0.8 --top-k 40 --top-p 0.95"
for m in $MODELS; do
  wait_for $m
  M=/tmp/models/$m.gguf
  say "== $m apr bench (greedy, then sampled)"
  $C/apr bench $M --device cuda -p 512 -n 128 -r 3 --json "$OUT/bench-$m.json" 2>&1 | table "$m greedy"
  $C/apr bench $M --device cuda -p 0 -n 128 -r 3 $S --json "$OUT/bench-$m-sampled.json" 2>&1 | table "$m sampled"
  if [ $m != 0.5b ]; then
    $C/apr bench $M --device cuda -p 512 -n 128 -r 2 --parallel 32 2>&1 | table "$m greedy"
    $C/apr bench $M --device cuda -p 512 -n 128 -r 2 --parallel 32 $S --json "$OUT/bench-$m-x32.json" 2>&1 | table "$m sampled"
  fi
done
if echo "$MODELS" | grep -q 7b; then
  M=/tmp/models/7b.gguf
  say "== 7b long contexts (flash attention for prompt chunks)"
  $C/apr bench $M --device cuda -p 4096,16384 -n 0 -r 2 --json "$OUT/bench-7b-long.json" 2>&1 | table "7b"
  $C/apr bench $M --device cuda -p 0 -n 128 -d 4096,16384 -r 2 2>&1 | table "7b"
  say "== 7b engine: serving workload, 64 requests, 32 at a time"
  $C/apr bench engine $M --device cuda --parallel 32 --ctx 1536 --requests 64 --concurrency 32 --prompt-len 128-1024 --output-len 64-256 $S --json "$OUT/engine-7b.json" 2>&1 | table "7b engine"
fi

serve_sweep() {  # MODEL: apr serve, then apr bench serve at 1, 8, 32, 64 streams
  local m=$1 M=/tmp/models/$1.gguf
  $C/apr serve $M --device cuda --port 8090 --parallel 64 --ctx 1024 --max-queue 256 > "$OUT/serve-$m.log" 2>&1 &
  local pid=$!
  for i in $(seq 120); do curl -sf http://127.0.0.1:8090/health > /dev/null && break; sleep 1; done
  say "== $m apr serve: $(head -3 "$OUT/serve-$m.log" | tr '\n' ' ')"
  for n in 1 8 32 64; do
    $C/apr bench serve http://127.0.0.1:8090 --requests $((2 * n)) --concurrency $n --prompt-len 512 --output-len 128 --tokenizer $M --json "$OUT/serve-$m-$n.json" 2>&1 | table "$m http x$n"
  done
  if [ $m = 7b ]; then  # prefix cache: the same 2,000-token prompt twice
    python3 - <<'PY' 2>&1 | tee -a "$R"
import json, time, urllib.request
prompt = [(i * 7919) % 150000 + 100 for i in range(2000)]
def ask():
    body = json.dumps({"prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
    t = time.perf_counter()
    r = json.load(urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8090/v1/completions", body, {"Content-Type": "application/json"})))
    return time.perf_counter() - t, r["usage"]["prompt_tokens_details"]["cached_tokens"], r["timings"]["prompt_ms"]
a, b = ask(), ask()
print(f"prefix cache 7b: first {a[0]*1e3:.1f} ms (cached {a[1]}, prompt_ms {a[2]:.1f}), repeat {b[0]*1e3:.1f} ms (cached {b[1]}, prompt_ms {b[2]:.1f}): {b[0]/a[0]:.3f}x")
PY
  fi
  kill -TERM $pid; wait $pid; say "$m serve exit $?: $(tail -1 "$OUT/serve-$m.log")"
}
for m in $MODELS; do [ $m != 0.5b ] && serve_sweep $m; done
tail -60 "$R"
