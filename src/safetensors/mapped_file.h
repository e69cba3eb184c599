// A whole file mapped read-only into memory (POSIX mmap); unmapped on destruction.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

#include "realizar/safetensors.h"

namespace realizar::safetensors {

class MappedFile {
 public:
  // Throws realizar::Error naming the file when it cannot be opened or mapped.
  explicit MappedFile(std::filesystem::path path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace realizar::safetensors
