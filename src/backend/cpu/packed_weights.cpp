#include "backend/cpu/packed_weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "realizar/error.h"
#include "util/thread_pool.h"

namespace realizar::cpu {
namespace {

// The 16 source blocks of one packed block; rows past the matrix point at a zero block.
template <typename Block>
struct Sources {
  const Block* row[kGroupRows];
};

template <typename Block>
Sources<Block> sources(const WeightTensor& w, int64_t first_row, int64_t block) {
  static const Block zero{};  // d = 0 (and m = dmin = 0): every value reads as 0
  Sources<Block> s;
  for (int r = 0; r < kGroupRows; ++r) {
    const int64_t row = first_row + r;
    s.row[r] = row < w.rows ? reinterpret_cast<const Block*>(w.row(row)) + block : &zero;
  }
  return s;
}

// Chunk byte 4r + i <- bytes[4 * quad + i] of row r: the 4 bytes of one quad of every row.
template <typename Block, typename Bytes>
void gather_quad(const Sources<Block>& s, Bytes bytes, int quad, uint8_t* chunk) {
  for (int r = 0; r < kGroupRows; ++r) std::memcpy(chunk + 4 * r, bytes(*s.row[r]) + 4 * quad, 4);
}

// Mask bit 4r + i <- bit(r, i) for the 64 bytes of a chunk.
template <typename Bit>
uint64_t gather_bits(Bit bit) {
  uint64_t mask = 0;
  for (int r = 0; r < kGroupRows; ++r) {
    for (int i = 0; i < 4; ++i) mask |= static_cast<uint64_t>(bit(r, i) & 1u) << (4 * r + i);
  }
  return mask;
}

uint32_t q5_high_bits(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return bits;
}

template <typename Packed, typename Block>
void pack_32(const Sources<Block>& s, Packed& p) {
    const auto qs = [](const Block& b) { return reinterpret_cast<const uint8_t*>(b.qs); };
  for (int c = 0; c < 4; ++c) {
    gather_quad(s, qs, c, p.qs[c]);
    if constexpr (HasHighBits<Packed>) {
      p.qh[c][0] = gather_bits([&](int r, int i) { return q5_high_bits(s.row[r]->qh) >> (4 * c + i); });
      p.qh[c][1] = gather_bits([&](int r, int i) { return q5_high_bits(s.row[r]->qh) >> (16 + 4 * c + i); });
    }
  }
  for (int r = 0; r < kGroupRows; ++r) {
    p.d[r] = s.row[r]->d;
    if constexpr (HasMin<Packed>) p.m[r] = s.row[r]->m;
  }
}

void pack_q8_0(const Sources<block_q8_0>& s, PackedQ8_0& p) {
  const auto qs = [](const block_q8_0& b) { return reinterpret_cast<const uint8_t*>(b.qs); };
  for (int c = 0; c < 8; ++c) gather_quad(s, qs, c, reinterpret_cast<uint8_t*>(p.qs[c]));
  for (int r = 0; r < kGroupRows; ++r) p.d[r] = s.row[r]->d;
}

template <typename Packed, typename Block>
void pack_q4_q5_K(const Sources<Block>& s, Packed& p) {
  const auto qs = [](const Block& b) { return b.qs; };
  for (int w = 0; w < 32; ++w) gather_quad(s, qs, w, p.qs[w]);
  if constexpr (HasHighBits<Packed>) {
    // Chunk 8p + c: low nibbles are elements 64p + 4c + i (bit 2p of qh[4c + i]), high nibbles
    // elements 64p + 32 + 4c + i (bit 2p + 1).
    for (int w = 0; w < 32; ++w) {
      const int pair = w / 8, c = w % 8;
      for (int half = 0; half < 2; ++half) {
        p.qh[w][half] = gather_bits([&](int r, int i) { return s.row[r]->qh[4 * c + i] >> (2 * pair + half); });
      }
    }
  }
  for (int r = 0; r < kGroupRows; ++r) {
    for (int sub = 0; sub < 8; ++sub) {
      uint8_t sc, m;
      unpack_scale_min_k4(sub, s.row[r]->scales, &sc, &m);
      p.scales[sub][r] = sc;
      p.mins[sub / 2][r][sub % 2] = m;
    }
    p.d[r] = s.row[r]->d;
    p.dmin[r] = s.row[r]->dmin;
  }
}

// The 6-bit values of a Q6_K block (quant_blocks.h): in half h, element r has its low 4 bits in
// nibble r / 64 of ql[64h + r % 64] and its top 2 bits at bits 2 (r / 32) of qh[32h + r % 32].
void q6_K_values(const block_q6_K& b, int q[QK_K]) {
  for (int h = 0; h < 2; ++h) {
    for (int r = 0; r < 64; ++r) {
      const uint8_t l = b.ql[64 * h + r], high = b.qh[32 * h + r % 32];
      q[128 * h + r] = (l & 0xF) | (((high >> (2 * (r / 32))) & 3) << 4);
      q[128 * h + 64 + r] = (l >> 4) | (((high >> (2 * (r / 32 + 2))) & 3) << 4);
    }
  }
}

void pack_q6_K(const Sources<block_q6_K>& s, PackedQ6_K& p) {
  for (int r = 0; r < kGroupRows; ++r) {
    int q[QK_K];
    q6_K_values(*s.row[r], q);
    for (int j = 0; j < 16; ++j) {
      PackedQ6_K::SubBlock& sub = p.sub[j];
      for (int i = 0; i < 4; ++i) {
        const int* quad = q + 16 * j + i;  // quad v of the sub-block is quad[4v]
        sub.ql[0][4 * r + i] = static_cast<uint8_t>((quad[0] & 0xF) | ((quad[4] & 0xF) << 4));
        sub.ql[1][4 * r + i] = static_cast<uint8_t>((quad[8] & 0xF) | ((quad[12] & 0xF) << 4));
        uint8_t high = 0;
        for (int v = 0; v < 4; ++v) high |= static_cast<uint8_t>((quad[4 * v] >> 4) << (2 * v));
        sub.qh[4 * r + i] = high;
      }
    }
    for (int j = 0; j < 16; ++j) p.scales[j / 2][r][j % 2] = s.row[r]->scales[j];
    p.d[r] = s.row[r]->d;
  }
}

size_t packed_block_bytes(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: return sizeof(PackedQ4_0);
    case TensorType::Q4_1: return sizeof(PackedQ4_1);
    case TensorType::Q5_0: return sizeof(PackedQ5_0);
    case TensorType::Q5_1: return sizeof(PackedQ5_1);
    case TensorType::Q8_0: return sizeof(PackedQ8_0);
    case TensorType::Q4_K: return sizeof(PackedQ4_K);
    case TensorType::Q5_K: return sizeof(PackedQ5_K);
    case TensorType::Q6_K: return sizeof(PackedQ6_K);
    default: fail("the CPU backend has no packed layout for {}", tensor_type_name(type));
  }
}

}  // namespace

bool can_pack(TensorType type) {
  switch (type) {
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q4_K: case TensorType::Q5_K: case TensorType::Q6_K:
      return true;
    default:
      return false;
  }
}

void pack_block(const WeightTensor& w, int64_t first_row, int64_t block, void* dst) {
  switch (w.type) {
    case TensorType::Q4_0: return pack_32(sources<block_q4_0>(w, first_row, block), *static_cast<PackedQ4_0*>(dst));
    case TensorType::Q4_1: return pack_32(sources<block_q4_1>(w, first_row, block), *static_cast<PackedQ4_1*>(dst));
    case TensorType::Q5_0: return pack_32(sources<block_q5_0>(w, first_row, block), *static_cast<PackedQ5_0*>(dst));
    case TensorType::Q5_1: return pack_32(sources<block_q5_1>(w, first_row, block), *static_cast<PackedQ5_1*>(dst));
    case TensorType::Q8_0: return pack_q8_0(sources<block_q8_0>(w, first_row, block), *static_cast<PackedQ8_0*>(dst));
    case TensorType::Q4_K:
      return pack_q4_q5_K(sources<block_q4_K>(w, first_row, block), *static_cast<PackedQ4_K*>(dst));
    case TensorType::Q5_K:
      return pack_q4_q5_K(sources<block_q5_K>(w, first_row, block), *static_cast<PackedQ5_K*>(dst));
    case TensorType::Q6_K: return pack_q6_K(sources<block_q6_K>(w, first_row, block), *static_cast<PackedQ6_K*>(dst));
    default: fail("the CPU backend has no packed layout for {}", tensor_type_name(w.type));
  }
}

void PackedArena::Free::operator()(uint8_t* p) const { std::free(p); }

PackedArena::PackedArena(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  size_ = std::max<size_t>((bytes + kHugePage - 1) / kHugePage * kHugePage, kHugePage);
  data_.reset(static_cast<uint8_t*>(std::aligned_alloc(kHugePage, size_)));
  if (!data_) fail("out of memory: {} MiB for the repacked weights", size_ >> 20);
  // Advice only: without transparent huge pages the memory works with normal pages.
  madvise(data_.get(), size_, MADV_HUGEPAGE);
}

uint8_t* PackedArena::take(size_t bytes) {
  if (bytes % 64 != 0 || bytes > size_ - used_) fail("packed weight arena: {} bytes do not fit ({} of {} used)", bytes, used_, size_);
  uint8_t* p = data_.get() + used_;
  used_ += bytes;
  return p;
}

size_t packed_bytes(const WeightTensor& w) {
  const int64_t block_size = tensor_type_info(w.type).block_size;
  const size_t block_bytes = packed_block_bytes(w.type);
  if (w.cols % block_size != 0) {
    fail("{} matrix with {} columns is not a whole number of {}-element blocks", tensor_type_name(w.type), w.cols,
         block_size);
  }
  const size_t groups = static_cast<size_t>((w.rows + kGroupRows - 1) / kGroupRows);
  return (groups * static_cast<size_t>(w.cols / block_size) * block_bytes + 63) / 64 * 64;
}

PackedMatrix::PackedMatrix(const WeightTensor& w, PackedArena& arena, ThreadPool& pool)
    : type_(w.type), rows_(w.rows), cols_(w.cols) {
  data_ = arena.take(packed_bytes(w));
  pack(w, pool);
}

PackedMatrix::PackedMatrix(const WeightTensor& w, ThreadPool& pool)
    : own_arena_(std::make_unique<PackedArena>(packed_bytes(w))), type_(w.type), rows_(w.rows), cols_(w.cols) {
  data_ = own_arena_->take(packed_bytes(w));
  pack(w, pool);
}

void PackedMatrix::pack(const WeightTensor& w, ThreadPool& pool) {
  const size_t block_bytes = packed_block_bytes(w.type);
  blocks_ = w.cols / tensor_type_info(w.type).block_size;
  group_bytes_ = block_bytes * static_cast<size_t>(blocks_);
  uint8_t* base = data_;
  pool.parallel_for(groups(), [&](int64_t begin, int64_t end, int) {
    for (int64_t g = begin; g < end; ++g) {
      for (int64_t b = 0; b < blocks_; ++b) {
        pack_block(w, g * kGroupRows, b, base + static_cast<size_t>(g) * group_bytes_ + static_cast<size_t>(b) * block_bytes);
      }
    }
  });
}

}  // namespace realizar::cpu
