// The portable kernel set: plain C++ on the packed layouts, written for clarity. It is what runs
// on CPUs without AVX2 and the definition the SIMD sets are tested against (with the dequantized
// operands as the independent reference, tests/cpu_kernels_test.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"

namespace realizar::cpu {
namespace {

// ---- values of the packed layouts: row lane r, column k of one packed block --------------------

// Byte 4r + i of a chunk: quad q's column 4q + i of row lane r.
int chunk_byte(const uint8_t* chunk, int r, int i) { return chunk[4 * r + i]; }
int mask_bit(uint64_t mask, int r, int i) { return static_cast<int>((mask >> (4 * r + i)) & 1u); }

// Q4_0..Q5_1: column k is quad k % 16 / 4 of chunk (k % 16) / 4, low nibble when k < 16.
template <typename Packed>
int value_32(const Packed& p, int r, int k) {
  const int c = (k % 16) / 4, i = k % 4, high = k / 16;
  const int byte = chunk_byte(p.qs[c], r, i);
  int q = high ? byte >> 4 : byte & 0xF;
  if constexpr (HasHighBits<Packed>) q |= mask_bit(p.qh[c][high], r, i) << 4;
  return q;
}

// Q4_K/Q5_K: column k = 64p + 32h + 4c + i is in chunk 8p + c, nibble h.
template <typename Packed>
int value_K(const Packed& p, int r, int k) {
  const int pair = k / 64, h = (k % 64) / 32, c = (k % 32) / 4, i = k % 4;
  const int w = 8 * pair + c;
  const int byte = chunk_byte(p.qs[w], r, i);
  int q = h ? byte >> 4 : byte & 0xF;
  if constexpr (HasHighBits<Packed>) q |= mask_bit(p.qh[w][h], r, i) << 4;
  return q;
}

// Q6_K: column k = 16j + 4v + i is quad v of sub-block j.
int value_q6_K(const PackedQ6_K& p, int r, int k) {
  const int j = k / 16, v = (k % 16) / 4, i = k % 4;
  const PackedQ6_K::SubBlock& sub = p.sub[j];
  const int byte = chunk_byte(sub.ql[v / 2], r, i);
  const int low = v % 2 ? byte >> 4 : byte & 0xF;
  return low | (((chunk_byte(sub.qh, r, i) >> (2 * v)) & 3) << 4);
}

// ---- GEMM ---------------------------------------------------------------------------------------

// x = d * (q - offset): the sum over a block is d * d_a * (dot(q, qa) - offset * sum(qa)), the
// integer part exact; with a min, x = d * q + m: d * d_a * dot(q, qa) + m * s_a.
template <typename Packed, int kOffset>
void gemm_32(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks,
             float* out) {
  const auto* packed = reinterpret_cast<const Packed*>(group);
  for (int64_t t = 0; t < tokens; ++t) {
    const auto* a = reinterpret_cast<const ActBlock32*>(act + static_cast<size_t>(t) * act_stride);
    for (int r = 0; r < kGroupRows; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        const Packed& p = packed[b];
        int32_t dot = -kOffset * a[b].sum;
        for (int k = 0; k < 32; ++k) dot += value_32(p, r, k) * a[b].qs[k];
        acc += fp16_to_fp32(p.d[r]) * static_cast<float>(dot) * a[b].d;
        if constexpr (HasMin<Packed>) acc += fp16_to_fp32(p.m[r]) * a[b].s;
      }
      out[t * kGroupRows + r] = acc;
    }
  }
}

void gemm_q8_0(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks,
               float* out) {
  const auto* packed = reinterpret_cast<const PackedQ8_0*>(group);
  for (int64_t t = 0; t < tokens; ++t) {
    const auto* a = reinterpret_cast<const ActBlock32*>(act + static_cast<size_t>(t) * act_stride);
    for (int r = 0; r < kGroupRows; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t dot = 0;
        for (int k = 0; k < 32; ++k) dot += packed[b].qs[k / 4][4 * r + k % 4] * a[b].qs[k];
        acc += fp16_to_fp32(packed[b].d[r]) * static_cast<float>(dot) * a[b].d;
      }
      out[t * kGroupRows + r] = acc;
    }
  }
}

template <typename Packed>
void gemm_q4_q5_K(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks,
                  float* out) {
  const auto* packed = reinterpret_cast<const Packed*>(group);
  for (int64_t t = 0; t < tokens; ++t) {
    const auto* a = reinterpret_cast<const ActBlockK*>(act + static_cast<size_t>(t) * act_stride);
    for (int r = 0; r < kGroupRows; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        const Packed& p = packed[b];
        int32_t scaled = 0, mins = 0;
        for (int s = 0; s < 8; ++s) {
          int32_t dot = 0;
          for (int k = 32 * s; k < 32 * s + 32; ++k) dot += value_K(p, r, k) * a[b].qs[k];
          scaled += p.scales[s][r] * dot;
          mins += p.mins[s / 2][r][s % 2] * a[b].bsums32[s];
        }
        acc += fp16_to_fp32(p.d[r]) * a[b].d * static_cast<float>(scaled) -
               fp16_to_fp32(p.dmin[r]) * a[b].d * static_cast<float>(mins);
      }
      out[t * kGroupRows + r] = acc;
    }
  }
}

void gemm_q6_K(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks,
               float* out) {
  const auto* packed = reinterpret_cast<const PackedQ6_K*>(group);
  for (int64_t t = 0; t < tokens; ++t) {
    const auto* a = reinterpret_cast<const ActBlockK*>(act + static_cast<size_t>(t) * act_stride);
    for (int r = 0; r < kGroupRows; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < blocks; ++b) {
        const PackedQ6_K& p = packed[b];
        int32_t scaled = 0, offsets = 0;  // sum sc * dot(q, qa) and sum sc * bsum (the -32)
        for (int j = 0; j < 16; ++j) {
          int32_t dot = 0;
          for (int k = 16 * j; k < 16 * j + 16; ++k) dot += value_q6_K(p, r, k) * a[b].qs[k];
          const int sc = p.scales[j / 2][r][j % 2];
          scaled += sc * dot;
          offsets += sc * a[b].bsums[j];
        }
        acc += fp16_to_fp32(p.d[r]) * a[b].d * static_cast<float>(scaled - 32 * offsets);
      }
      out[t * kGroupRows + r] = acc;
    }
  }
}

// ---- attention ----------------------------------------------------------------------------------

void attention(const AttentionArgs& args) {
  const int64_t head_dim = args.head_dim;
  const auto [longest, stride, block, scores] = attention_scratch_layout(args);
  for (int64_t start = 0; start < longest; start += 16) {
    const ggml_half* keys = args.keys + args.block_table[start / 16] * args.key_block_stride;
    for (int64_t e = 0; e < 16 * head_dim; ++e) block[e] = fp16_to_fp32(keys[e]);
    for (int64_t i = 0; i < args.queries; ++i) {
      for (int64_t j = 0; j < std::min<int64_t>(16, args.lengths[i] - start); ++j) {
        float dot = 0.0f;
        for (int64_t e = 0; e < head_dim; ++e) dot += args.q[i][e] * block[e * 16 + j];
        scores[i * stride + start + j] = dot * args.scale;
      }
    }
  }
  for (int64_t i = 0; i < args.queries; ++i) {
    float* s = scores + i * stride;
    const float max = *std::max_element(s, s + args.lengths[i]);
    float total = 0.0f;
    for (int64_t j = 0; j < args.lengths[i]; ++j) total += (s[j] = std::exp(s[j] - max));
    for (int64_t j = 0; j < args.lengths[i]; ++j) s[j] /= total;
    std::fill_n(args.out[i], head_dim, 0.0f);
  }
  for (int64_t start = 0; start < longest; start += 16) {
    const int64_t slot0 = static_cast<int64_t>(args.block_table[start / 16]) * 16;
    const int64_t count = std::min<int64_t>(16, longest - start);
    for (int64_t j = 0; j < count; ++j) {
      for (int64_t e = 0; e < head_dim; ++e) block[j * head_dim + e] = fp16_to_fp32(args.values[(slot0 + j) * args.value_stride + e]);
    }
    for (int64_t i = 0; i < args.queries; ++i) {
      const float* p = scores + i * stride + start;
      for (int64_t j = 0; j < std::min(count, args.lengths[i] - start); ++j) {
        for (int64_t e = 0; e < head_dim; ++e) args.out[i][e] += p[j] * block[j * head_dim + e];
      }
    }
  }
}

// ---- activations and float helpers ------------------------------------------------------------

void quantize_k(const float* x, ActBlockK* out, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    ActBlockK& block = out[b];
    float amax = 0.0f, max = 0.0f;  // the value of largest magnitude, the first one on ties
    for (int i = 0; i < QK_K; ++i) {
      if (std::fabs(x[i]) > amax) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    const float iscale = max != 0.0f ? -127.0f / max : 0.0f;
    block.d = iscale != 0.0f ? 1.0f / iscale : 0.0f;
    for (int i = 0; i < QK_K; ++i) {
      block.qs[i] = static_cast<int8_t>(std::clamp(static_cast<int>(std::nearbyint(iscale * x[i])), -128, 127));
    }
    for (int s = 0; s < QK_K / 16; ++s) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += block.qs[16 * s + i];
      block.bsums[s] = static_cast<int16_t>(sum);
    }
    for (int s = 0; s < QK_K / 32; ++s) block.bsums32[s] = static_cast<int16_t>(block.bsums[2 * s] + block.bsums[2 * s + 1]);
  }
}

void quantize_32(const float* x, ActBlock32* out, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int i = 0; i < 32; ++i) sum += out[b].qs[i] = static_cast<int8_t>(std::round(x[i] * id));
    out[b].d = fp16_to_fp32(fp32_to_fp16(d));
    out[b].sum = sum;
    out[b].s = out[b].d * static_cast<float>(sum);
  }
}

float dot_f32(const float* w, const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

float dot_f16(const ggml_half* w, const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += fp16_to_fp32(w[i]) * x[i];
  return sum;
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_fp32(w[i]) * x[i];
  return sum;
}

void to_f16(const float* x, ggml_half* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

const KernelSet& scalar_kernels() {
  static const KernelSet set{
      Isa::Scalar,
      {gemm_32<PackedQ4_0, 8>, gemm_32<PackedQ4_1, 0>, gemm_32<PackedQ5_0, 16>, gemm_32<PackedQ5_1, 0>, gemm_q8_0,
       gemm_q4_q5_K<PackedQ4_K>, gemm_q4_q5_K<PackedQ5_K>, gemm_q6_K},
      attention,
      quantize_k,
      quantize_32,
      dot_f32,
      dot_f16,
      dot_bf16,
      to_f16,
      swiglu,
  };
  return set;
}

}  // namespace realizar::cpu
