// The CUDA backend's captured step graphs, keyed by step shape and bounded in number: a serving
// run meets many shapes (every count of running sequences, attention splits growing with the
// context), so the least recently used graph is destroyed once `capacity` are held.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <tuple>

namespace realizar::cuda {

struct GraphKey {
  int64_t tokens;
  int splits;  // of the decode tokens' attention
  int64_t outputs;
  int mode;  // what the step hands back (the backend's ResultMode)
  // The rest of the attention's launch shape (kernels.h, AttentionPlan): decode tokens, query
  // tiles and the tiles' splits.
  int64_t decode_tokens = 0;
  int64_t tiles = 0;
  int tile_splits = 1;
  auto tie() const { return std::tie(tokens, splits, outputs, mode, decode_tokens, tiles, tile_splits); }
  bool operator<(const GraphKey& other) const { return tie() < other.tie(); }
};

class GraphCache {
 public:
  explicit GraphCache(size_t capacity) : capacity_(capacity) {}
  ~GraphCache() {
    for (auto& [key, entry] : graphs_) cudaGraphExecDestroy(entry.exec);
  }
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // The graph for `key`, marked most recently used; nullptr when none is held.
  cudaGraphExec_t find(const GraphKey& key) {
    const auto it = graphs_.find(key);
    if (it == graphs_.end()) return nullptr;
    order_.splice(order_.end(), order_, it->second.position);
    return it->second.exec;
  }

  // Holds `exec` for `key` (which must be new), destroying the least recently used graph when
  // the cache is full.
  void insert(const GraphKey& key, cudaGraphExec_t exec) {
    if (graphs_.size() >= capacity_) {
      const auto oldest = graphs_.find(order_.front());
      cudaGraphExecDestroy(oldest->second.exec);
      graphs_.erase(oldest);
      order_.pop_front();
    }
    order_.push_back(key);
    graphs_.emplace(key, Entry{exec, std::prev(order_.end())});
  }

  size_t size() const { return graphs_.size(); }

 private:
  struct Entry {
    cudaGraphExec_t exec;
    std::list<GraphKey>::iterator position;
  };
  size_t capacity_;
  std::map<GraphKey, Entry> graphs_;
  std::list<GraphKey> order_;  // least recently used first
};

}  // namespace realizar::cuda
