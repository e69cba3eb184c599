#include "convert/hparams.h"

#include "realizar/error.h"

namespace realizar::convert_detail {
namespace {

uint32_t as_u32(std::string_view key, int64_t value) {
  if (value <= 0 || value > UINT32_MAX) fail("{} = {} is out of range", key, value);
  return static_cast<uint32_t>(value);
}

}  // namespace

void write_hyper_params(gguf::Writer& writer, const HyperParams& p) {
  const std::string prefix = p.architecture + ".";
  auto set_u32 = [&](const std::string& key, int64_t value) {
    writer.set(prefix + key, gguf::Value(as_u32(prefix + key, value)));
  };
  auto set_f32 = [&](const std::string& key, double value) {
    writer.set(prefix + key, gguf::Value(static_cast<float>(value)));
  };
  writer.set("general.architecture", gguf::Value(p.architecture));
  writer.set("general.name", gguf::Value(p.name));
  set_u32("context_length", p.context_length);
  set_u32("embedding_length", p.embedding_length);
  set_u32("block_count", p.block_count);
  set_u32("feed_forward_length", p.feed_forward_length);
  set_u32("attention.head_count", p.head_count);
  set_u32("attention.head_count_kv", p.head_count_kv);
  set_f32("rope.freq_base", p.rope_freq_base);
  set_f32(p.layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
          p.norm_epsilon);
  set_u32("rope.dimension_count", p.rope_dimension_count);
  if (p.head_dim) {
    set_u32("attention.key_length", *p.head_dim);
    set_u32("attention.value_length", *p.head_dim);
  }
}

}  // namespace realizar::convert_detail
