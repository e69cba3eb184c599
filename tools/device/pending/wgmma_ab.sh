# The warpgroup (wgmma) tensor-core product against the mma.sync one, on one GPU machine
# (docs/perf-notes.md, "A warpgroup product for steps of 9-64 tokens"; written 2026-12-08, not yet
# run on a device). Here, before the call:
#   git apply tools/device/pending/wgmma-product.patch
#   cmake -S . -B build-dev -G Ninja -DREALIZAR_NATIVE=OFF -DREALIZAR_BENCH=OFF -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-dev --target apr cuda_mma_test cuda_backend_test cuda_engine_test
#   mkdir -p /tmp/c/n .carry && cp build-dev/{apr,cuda_mma_test,cuda_backend_test,cuda_engine_test} \
#     build-dev/libcpp-httplib.so* /tmp/c/n/ && strip /tmp/c/n/apr /tmp/c/n/cuda_*_test
#   tar cJf .carry/wg1.tar.xz -C /tmp c/n && cp tools/device/pending/wgmma_ab.sh .carry/wg1.sh
# then the device call `bash .carry/wg1.sh; cat $OUT/summary.txt` with carry [".carry"].
# It checks both kernels against the float64 reference (cuda_mma_test, REALIZAR_CUDA_WGMMA=0/1),
# times every shape of the crossover bench with each, and runs `apr bench` x8/x32 sampled on 7B
# and 1.5B with each, alternated.
set -u
R=$PWD
tar xJf .carry/wg1.tar.xz -C /tmp
N=/tmp/c/n; export LD_LIBRARY_PATH=$N
S=$OUT/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $OUT/gpu.txt 2>&1
cat $OUT/gpu.txt >> $S
for v in 0 1; do
  REALIZAR_CUDA_WGMMA=$v timeout 240 $N/cuda_mma_test > $OUT/mma-test-$v.txt 2>&1
  echo "mma test wgmma=$v rc=$? $(grep -E '^\[  (PASSED|FAILED) ' $OUT/mma-test-$v.txt | tr '\n' ' ')" >> $S
  grep -E '^\[  FAILED' $OUT/mma-test-$v.txt | head -5 >> $S
done
if grep -q '^\[  PASSED' $OUT/mma-test-1.txt && ! grep -q '^\[  FAILED' $OUT/mma-test-1.txt; then OK=1; else OK=0; fi
echo "wgmma correct: $OK" >> $S
if [ $OK = 0 ]; then
  REALIZAR_CUDA_WGMMA=1 timeout 60 $N/cuda_mma_test --gtest_filter='Types/CudaMma.*Q4_K*' 2>&1 | grep -E 'Expected|Which is|max|error|row|token' | head -40 >> $S
  exit 0
fi
for v in 1 0; do
  REALIZAR_CUDA_BENCH=1 REALIZAR_CUDA_WGMMA=$v timeout 200 $N/cuda_mma_test --gtest_filter='*Crossover*' > $OUT/crossover-$v.txt 2>&1
  echo "crossover wgmma=$v rc=$?" >> $S
done
paste <(grep -E '^\S+ +\S+ +\S+ x \S+ +(32|64) mma [0-9/]+\*' $OUT/crossover-0.txt) <(grep -E '^\S+ +\S+ +\S+ x \S+ +(32|64) mma [0-9/]+\*' $OUT/crossover-1.txt | awk '{print $(NF-1)}') >> $S
mkdir -p /tmp/models
for m in 7b 1.5b; do
  $N/apr synth qwen2.5-$m -o /tmp/models/$m.gguf --type q4_k_m > /dev/null 2>&1
  for v in 0 1 0 1; do
    r=$(REALIZAR_CUDA_WGMMA=$v timeout 150 $N/apr bench /tmp/models/$m.gguf --device cuda -p 512 -n 128 -r 2 --parallel 8,32 --temp 0.8 --top-k 40 --top-p 0.95 2>&1 | tee -a $OUT/bench-$m-$v.txt | grep -E '^\| (pp|tg)' | tr '\n' ' ')
    echo "$m wgmma=$v sampled: $r" >> $S
  done
done
