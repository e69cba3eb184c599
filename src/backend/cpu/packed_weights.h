// Weight matrices repacked at load for the CPU GEMM kernels (kernels.h): rows in groups of 16,
// each group storing its column blocks in order, and each block of the group storing the same
// field of its 16 rows side by side. The integer values are arranged so that one 64-byte load is
// "16 rows x 4 consecutive columns", the operand of one AVX-512 vpdpbusd against 4 activation
// bytes broadcast to every lane (two such operands for 4-bit data: low and high nibbles). AVX2
// reads each 64-byte chunk as two halves of 8 rows.
//
// Vocabulary: row lane r (0..15) is row 16g + r of the matrix; quad q is columns 4q..4q+3 of the
// block; a chunk is 64 bytes where byte 4r + i holds column 4q + i of row lane r. The values are
// those of the GGUF block (include/realizar/quant_blocks.h), unchanged; only their places move, so
// each packed block takes as many bytes as the 16 original ones (Q4_K/Q5_K: 64 more, their 6-bit
// scales stored as bytes). Rows past the end of the matrix are zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "realizar/model.h"
#include "realizar/quant_blocks.h"

namespace realizar {
class ThreadPool;
}

namespace realizar::cpu {

constexpr int kGroupRows = 16;

// Q4_0 (x = d * (q - 8)) and Q4_1 (x = d * q + m): qs[c] low nibbles are quad c, high nibbles quad
// c + 4 (columns 16 + 4c..), exactly the 4 bytes qs[4c..4c+3] of each row.
struct PackedQ4_0 {
  uint8_t qs[4][64];
  ggml_half d[16];
};
struct PackedQ4_1 {
  uint8_t qs[4][64];
  ggml_half d[16];
  ggml_half m[16];
};
// Q5_0 / Q5_1: as Q4_0 / Q4_1; bit 4 of the value in byte j of chunk c's low (qh[c][0]) and high
// (qh[c][1]) nibbles is bit j of the mask.
// (The masks come first, so that the kernels, which read qh[c] with qs[c], go up in memory.)
struct PackedQ5_0 {
  uint64_t qh[4][2];
  uint8_t qs[4][64];
  ggml_half d[16];
};
struct PackedQ5_1 {
  uint64_t qh[4][2];
  uint8_t qs[4][64];
  ggml_half d[16];
  ggml_half m[16];
};
// Q8_0 (x = d * q): qs[c] is quad c, signed bytes.
struct PackedQ8_0 {
  int8_t qs[8][64];
  ggml_half d[16];
};
// Q4_K (x = d * sc * q - dmin * m per sub-block of 32): chunk 8p + c holds quad 16p + c (sub-block
// 2p) in its low nibbles and quad 16p + 8 + c (sub-block 2p + 1) in its high nibbles, i.e. bytes
// qs[32p + 4c ..] of each row. scales[s][r] is sub-block s's scale; mins[p][r] the mins of
// sub-blocks 2p and 2p + 1 (int16 pairs once widened, for vpdpwssd against the activation sums).
// The scales come first: a block is then read in ascending address order (what the hardware
// prefetchers follow best when a decode step streams it from memory).
struct PackedQ4_K {
  uint8_t scales[8][16];
  uint8_t mins[4][16][2];
  ggml_half d[16];
  ggml_half dmin[16];
  uint8_t qs[32][64];
};
// Q5_K: Q4_K plus bit 4 of the low (qh[w][0]) and high (qh[w][1]) nibble values of chunk w.
struct PackedQ5_K {
  uint8_t scales[8][16];
  uint8_t mins[4][16][2];
  ggml_half d[16];
  ggml_half dmin[16];
  uint64_t qh[32][2];
  uint8_t qs[32][64];
};
// Q6_K (x = d * sc * (q - 32) per sub-block of 16): sub-block j is quads 4j..4j+3: ql[0] holds
// quads 4j (low nibbles) and 4j + 1 (high), ql[1] quads 4j + 2 and 4j + 3, and byte b of qh has
// the top 2 bits of quad 4j + v's value b at bits 2v, 2v + 1. scales[p][r] are the scales of
// sub-blocks 2p and 2p + 1 (int16 pairs once widened).
struct PackedQ6_K {
  struct SubBlock {
    uint8_t ql[2][64];
    uint8_t qh[64];
  };
  int8_t scales[8][16][2];  // first, as in Q4_K; d (read last) last
  SubBlock sub[16];
  ggml_half d[16];
};

static_assert(sizeof(PackedQ4_0) == 16 * sizeof(block_q4_0));
static_assert(sizeof(PackedQ4_1) == 16 * sizeof(block_q4_1));
static_assert(sizeof(PackedQ5_0) == 16 * sizeof(block_q5_0));
static_assert(sizeof(PackedQ5_1) == 16 * sizeof(block_q5_1));
static_assert(sizeof(PackedQ8_0) == 16 * sizeof(block_q8_0));
static_assert(sizeof(PackedQ4_K) == 16 * sizeof(block_q4_K) + 64);
static_assert(sizeof(PackedQ5_K) == 16 * sizeof(block_q5_K) + 64);
static_assert(sizeof(PackedQ6_K) == 16 * sizeof(block_q6_K));

// The packed blocks with a fifth bit (Q5_*) and with a min (Q4_1, Q5_1).
template <typename Packed>
concept HasHighBits = requires(const Packed& p) { p.qh; };
template <typename Packed>
concept HasMin = requires(const Packed& p) { p.m; };

// Whether `type` has a packed layout (kernels.h kPackedTypes).
bool can_pack(TensorType type);

// Memory for packed matrices: one allocation, aligned to 2 MiB and advised for transparent huge
// pages (madvise MADV_HUGEPAGE): a decode step streams every weight once, and with 4 KiB pages that
// is a TLB miss every 4 KiB.
class PackedArena {
 public:
  explicit PackedArena(size_t bytes);  // throws realizar::Error when the memory cannot be had
  // The next `bytes` (a multiple of 64) of the arena; throws realizar::Error when it is used up.
  uint8_t* take(size_t bytes);

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0, used_ = 0;
};

// Bytes the packed copy of `w` takes (a multiple of 64); throws realizar::Error for a type
// can_pack refuses or columns that are not whole blocks.
size_t packed_bytes(const WeightTensor& w);

// A matrix in the packed layout.
class PackedMatrix {
 public:
  // Repacks `w` with the threads of `pool` into packed_bytes(w) bytes of `arena`.
  PackedMatrix(const WeightTensor& w, PackedArena& arena, ThreadPool& pool);
  // The same in an arena of its own (tests, benchmarks).
  PackedMatrix(const WeightTensor& w, ThreadPool& pool);

  TensorType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t groups() const { return (rows_ + kGroupRows - 1) / kGroupRows; }
  int64_t blocks() const { return blocks_; }  // column blocks per row
  size_t group_bytes() const { return group_bytes_; }
  const uint8_t* group(int64_t g) const { return data_ + static_cast<size_t>(g) * group_bytes_; }
  size_t bytes() const { return group_bytes_ * static_cast<size_t>(groups()); }

 private:
  void pack(const WeightTensor& w, ThreadPool& pool);

  std::unique_ptr<PackedArena> own_arena_;  // only for the second constructor
  TensorType type_;
  int64_t rows_, cols_, blocks_;
  size_t group_bytes_;
  uint8_t* data_ = nullptr;
};

// Packs column block `block` of the 16 rows starting at `first_row` of `w` (rows past the end
// read as zero) into `dst` (one Packed* struct of w's type). Exposed for tests.
void pack_block(const WeightTensor& w, int64_t first_row, int64_t block, void* dst);

}  // namespace realizar::cpu
