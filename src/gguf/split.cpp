// Split GGUF models as llama.cpp's gguf-split writes them (gguf-split.cpp; read back by
// llama_model_loader in llama-model-loader.cpp): part k of N is PREFIX-{k:05}-of-{N:05}.gguf, every
// part carries split.no / split.count / split.tensors.count, the first one all other metadata.
#include <fmt/format.h>

#include <optional>
#include <utility>

#include "realizar/error.h"
#include "realizar/gguf.h"

namespace realizar::gguf {
namespace {

constexpr std::string_view kSplitNo = "split.no";
constexpr std::string_view kSplitCount = "split.count";
constexpr std::string_view kSplitTensorsCount = "split.tensors.count";

// `path` without the postfix of part `no` of `count` (llama_split_prefix); nullopt when the
// name does not end that way.
std::optional<std::string> split_prefix(const std::string& path, uint64_t no, uint64_t count) {
  const std::string postfix = split_part_path("", no, count);
  if (path.size() <= postfix.size() || !path.ends_with(postfix)) return std::nullopt;
  return path.substr(0, path.size() - postfix.size());
}

}  // namespace

std::string split_part_path(std::string_view prefix, uint64_t index, uint64_t count) {
  return fmt::format("{}-{:05}-of-{:05}.gguf", prefix, index + 1, count);
}

File File::open(const std::filesystem::path& path) {
  File file = open_one(path);
  if (file.find(kSplitCount) != nullptr || file.find(kSplitNo) != nullptr) file.open_other_parts();
  return file;
}

void File::open_other_parts() {
  const std::string first = path().string();
  const uint64_t count = get_uint(kSplitCount);
  const uint64_t no = get_uint(kSplitNo);
  if (count == 0) fail("{}: split.count is 0", first);
  if (no != 0) {
    const auto prefix = split_prefix(first, no, count);
    fail("{}: this is part {} of {} of a split model: open the first part{}", first, no + 1, count,
         prefix ? " (" + split_part_path(*prefix, 0, count) + ")" : "");
  }
  const uint64_t expected_tensors = get_uint(kSplitTensorsCount);
  std::string prefix;  // the other parts' names derive from the first one's
  if (count > 1) {
    const auto found = split_prefix(first, 0, count);
    if (!found) {
      fail("{}: the first part of a model split in {} must be named NAME-00001-of-{:05}.gguf",
           first, count, count);
    }
    prefix = *found;
  }
  for (uint64_t k = 1; k < count; ++k) {
    const std::string part_path = split_part_path(prefix, k, count);
    if (!std::filesystem::exists(part_path)) {
      fail("{}: part {} of {} is missing: {}", first, k + 1, count, part_path);
    }
    File part = open_one(part_path);
    const uint64_t part_no = part.get_uint(kSplitNo);
    const uint64_t part_count = part.get_uint(kSplitCount);
    if (part_no != k || part_count != count) {
      fail("{}: split.no {} and split.count {} say part {} of {}, but the name says part {} of {}",
           part_path, part_no, part_count, part_no + 1, part_count, k + 1, count);
    }
    adopt_part(std::move(part), static_cast<uint32_t>(k));
  }
  if (tensors_.size() != expected_tensors) {
    fail("{}: split.tensors.count is {} but the {} parts hold {} tensors", first, expected_tensors,
         count, tensors_.size());
  }
}

// Takes over `part`'s mapping and appends its tensors, marked as being in part `index`.
void File::adopt_part(File part, uint32_t index) {
  for (TensorInfo& info : part.tensors_) {
    if (const TensorInfo* seen = find_tensor(info.name)) {
      fail("{}: tensor '{}' is in part {} and in part {}", path().string(), info.name,
           seen->part + 1, index + 1);
    }
    info.part = index;
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }
  parts_.push_back(part.parts_.front());
  mappings_.push_back(std::exchange(part.mappings_, {}).front());
}

}  // namespace realizar::gguf
