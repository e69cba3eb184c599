#!/bin/bash
# The record run on the GPU machine, from the repository root: the figures of docs/BENCHMARKS.md.
# $1: a folder of binaries built on the development machine with -DREALIZAR_NATIVE=OFF (apr with
# libcpp-httplib.so beside it, the GPU tests; optionally llama.cpp's CPU build in $1/llama for the
# CPU rows). The tests have the source and build paths of the development machine compiled in
# ($SRC, default /work/main): both are recreated here as links.
# PARTS (default "tests bench"): any of
#   tests  GPU tests, compute-sanitizer on attention, the attention benchmark
#   bench  apr bench per model: pp512 + tg128 greedy and sampled, 32 streams, 7B context depths
#   serve  apr serve + apr bench serve at 1/8/32/64 streams (2 requests per stream), 32 streams in a
#          steady state (8 per stream; step budgets 512 and 256), the prefix-cache check, apr bench engine
#   cpu    the host CPU: apr bench --device cpu against llama-bench, same files and threads
# MODELS (default "0.5b 1.5b 7b 32b"): synth Q4_K_M qwen2.5 presets made (in this order) and used;
# BENCH_MODELS: those of the bench part (default all). Results: $OUT/summary.txt and
# $OUT/results.tar.xz (logs and JSON documents).
set -u
C=$1
PARTS=${PARTS:-"tests bench"}
MODELS=${MODELS:-"0.5b 1.5b 7b 32b"}
BENCH_MODELS=${BENCH_MODELS:-$MODELS}  # the models of the bench part
SRC=${SRC:-/work/main}
R=$OUT/summary.txt
L=/tmp/results
TOK=tests/data/tokenizers/qwen2/tokenizer.json
S="--temp 0.8 --top-k 40 --top-p 0.95"
mkdir -p /tmp/models $L "$(dirname "$SRC")"
ln -sfn "$PWD" "$SRC" 2>/dev/null
mkdir -p build-dev && cp $C/apr $C/libcpp-httplib.so* build-dev/
synth() { [ -f /tmp/models/$1.gguf ] || $C/apr synth qwen2.5-$1 -o /tmp/models/$1.gguf --type q4_k_m --tokenizer $TOK >/dev/null 2>&1; touch /tmp/$1.done; }
( for m in $MODELS; do synth $m; done ) &
wait_for() { while [ ! -f /tmp/$1.done ]; do sleep 1; done; }
has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
say() { echo "$*" | tee -a "$R"; }
table() { grep -E "^\| (pp|tg|metric|requests|output|aggregate|TTFT|ITL|TPOT|model)" | sed "s/^/$1 /" | tee -a "$R"; }
bench() { local tag=$1; shift; timeout 200 $C/apr bench "$@" --json $L/bench-$tag.json > $L/bench-$tag.txt 2>&1; say "-- $tag rc=$?"; table "$tag" < $L/bench-$tag.txt; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$R"
lscpu | grep -E "^Model name|^CPU\(s\)|^Thread" | tee -a "$R"
ldd $C/apr | grep "not found" | tee -a "$R"

if has tests; then
  for t in cuda_attention_test cuda_backend_test cuda_engine_test cuda_sampling_test cuda_mma_test cuda_kernels_test; do
    [ -x $C/$t ] || continue
    timeout 200 $C/$t --gtest_brief=1 > $L/$t.log 2>&1
    say "$t rc=$?: $(grep -E '^\[  (PASSED|FAILED)' $L/$t.log | tr '\n' ' ')"
    grep -B3 -A15 "Failure" $L/$t.log | head -40 >> "$R"
  done
  F='Decode/*/decode_05b_empty_ranges:Decode/*/head72_group3:Decode/*/head8_group2:Decode/*/group8_head128:Decode/*/decode_7b_split5:Decode/*/parallel32_05b:Decode/*/head96_group4_unsplit:Steps/*/mixed_05b:Steps/*/chunks_head72_group3_split2:Steps/*/phi2_head80_group1'
  for tool in memcheck racecheck initcheck; do
    say "$tool attention: $(timeout 70 compute-sanitizer --tool $tool $C/cuda_attention_test --gtest_filter="$F" 2>&1 | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' | tail -1)"
  done
  F='*/Q6_K_21x4864_t19:*/Q6_K_300x1536_t57:*/Q5_0_71x896_t40:*/Q4_K_21x4864_t9:*/Q8_0_53x2080_t17:*/Q4_1_53x2080_t17:*/Q4_K_45x1536_t300:Types/CudaMmaParts.*:CudaMma.RefusesWhatItHasNoKernelFor'
  for tool in memcheck racecheck; do
    say "$tool mma: $(timeout 70 compute-sanitizer --tool $tool $C/cuda_mma_test --gtest_filter="$F" 2>&1 | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' | tail -1)"
  done
  say "memcheck kernels: $(timeout 100 compute-sanitizer --tool memcheck $C/cuda_kernels_test --gtest_brief=1 2>&1 | grep 'ERROR SUMMARY' | tail -1)"
  say "memcheck backend: $(timeout 70 compute-sanitizer --tool memcheck $C/cuda_backend_test --gtest_filter='*GraphedStepsWithPromptChunks*:*ChunkContinuing*' 2>&1 | grep 'ERROR SUMMARY' | tail -1)"
  REALIZAR_CUDA_BENCH=1 timeout 100 $C/cuda_attention_bench_test > $L/attention_bench.txt 2>&1; say "attention bench rc=$?"
fi

if has bench; then
  for m in $BENCH_MODELS; do
    wait_for $m; M=/tmp/models/$m.gguf
    bench $m $M --device cuda -p 512 -n 128 -r 3
    bench $m-sampled $M --device cuda -p 0 -n 128 -r 3 $S
    [ $m = 0.5b ] || bench $m-x32 $M --device cuda -p 512 -n 128 -r 2 --parallel 1,8,32 $S
    [ $m = 7b ] && bench 7b-depth $M --device cuda -p 512 -n 128 -d 4096,16384 -r 2
  done
fi

if has cpu; then
  T=$(nproc)
  for m in $MODELS; do wait_for $m; done  # a synth still running would take the CPU from the measurement
  for m in 0.5b 1.5b; do
    wait_for $m; M=/tmp/models/$m.gguf
    for round in 1 2; do
      bench cpu-$m-$round $M --device cpu -p 64 -n 32 -r 3 -t $T
      timeout 200 $C/llama/llama-bench -m $M -p 64 -n 32 -r 3 -t $T -o json > $L/llama-bench-$m-$round.json 2> $L/llama-bench-$m-$round.err
      say "-- llama-bench $m round $round rc=$?"
      python3 -c "import json,sys; [print('llama.cpp', '$m', 'pp' if r['n_prompt'] else 'tg', r['n_threads'], round(r['avg_ts'],1), '±', round(r['stddev_ts'],1)) for r in json.load(open(sys.argv[1]))]" $L/llama-bench-$m-$round.json | tee -a "$R"
    done
  done
fi

serve_sweep() {  # MODEL TAG LEVELS [apr serve flags]: apr serve, then apr bench serve at each level of streams
  local m=$1 tag=$2 levels=$3 M=/tmp/models/$1.gguf
  shift 3
  wait_for $m
  $C/apr serve $M --device cuda --port 8090 --parallel 64 --ctx 4096 --max-queue 256 "$@" > $L/serve-$tag.log 2>&1 &
  local pid=$!
  for i in $(seq 120); do curl -sf http://127.0.0.1:8090/health > /dev/null && break; sleep 1; done
  say "== $tag apr serve $*: $(head -3 $L/serve-$tag.log | tr '\n' ' ')"
  for n in $levels; do
    timeout 200 $C/apr bench serve http://127.0.0.1:8090 --requests $((${REQUESTS_PER_STREAM:-2} * n)) --concurrency $n --prompt-len 512 --output-len 128 \
      --tokenizer $M --json $L/serve-$tag-$n.json > $L/serve-$tag-$n.txt 2>&1
    table "$tag http x$n" < $L/serve-$tag-$n.txt
  done
  if [ $tag = 7b ]; then  # prefix cache: the same 2,000-token prompt twice
    python3 - <<'PY' 2>&1 | tee -a "$R"
import json, time, urllib.request
prompt = [(i * 7919) % 150000 + 100 for i in range(2000)]
def ask():
    body = json.dumps({"prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
    t = time.perf_counter()
    req = urllib.request.Request("http://127.0.0.1:8090/v1/completions", body, {"Content-Type": "application/json"})
    r = json.load(urllib.request.urlopen(req))
    return time.perf_counter() - t, r["usage"]["prompt_tokens_details"]["cached_tokens"], r["timings"]["prompt_ms"]
a, b = ask(), ask()
print(f"prefix cache 7b: first {a[0]*1e3:.1f} ms (cached {a[1]}, prompt_ms {a[2]:.1f}), repeat {b[0]*1e3:.1f} ms (cached {b[1]}, prompt_ms {b[2]:.1f}): {b[0]/a[0]:.3f}x")
PY
  fi
  # what the steps were: tokens per step and the backend's time per step, over the whole sweep
  curl -s http://127.0.0.1:8090/metrics | grep -E "^realizar:(iteration_tokens_total|engine_step_duration_seconds)" > $L/metrics-$tag.txt
  kill -TERM $pid; wait $pid; say "$tag serve exit $?: $(tail -1 $L/serve-$tag.log)"
}
if has serve; then
  for m in $MODELS; do case $m in 1.5b|7b) serve_sweep $m $m "1 8 32 64" ;; esac; done
  # a steady state at 32 streams (8 requests per client: ramp and tail a small part of the run),
  # with the default step budget and with 256 tokens
  for m in $MODELS; do case $m in 1.5b|7b)
    REQUESTS_PER_STREAM=8 serve_sweep $m $m-steady "32"
    REQUESTS_PER_STREAM=8 serve_sweep $m $m-steady-b256 "32" --max-batch-tokens 256 ;; esac; done
  # the inter-token latency / throughput trade: steps of at most 64 tokens stay on the tensor-core path
  echo "$MODELS" | grep -q 7b && serve_sweep 7b 7b-budget64 "32" --max-batch-tokens 64
  if echo "$MODELS" | grep -q 7b; then
    bench 7b-engine engine /tmp/models/7b.gguf --device cuda --parallel 32 --ctx 1536 --requests 64 --concurrency 32 \
      --prompt-len 128-1024 --output-len 64-256 $S
  fi
fi
tar cJf $OUT/results.tar.xz -C /tmp results
