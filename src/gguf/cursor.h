// A read position over the mapped bytes of a GGUF file. All bounds checks of the reader happen
// here: every read either stays inside [0, size) or throws realizar::Error naming the file, the
// offset of the read and the item being read ("<path>: offset <n>: <context>: ...").
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "realizar/error.h"

namespace realizar::gguf {

class Cursor {
 public:
  Cursor(std::string path, const uint8_t* bytes, uint64_t size)
      : path_(std::move(path)), bytes_(bytes), size_(size) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return size_ - offset_; }

  // What is being parsed ("metadata key 'general.name'"), prefixed to error messages.
  void set_context(std::string context) { context_ = std::move(context); }

  // Reads a little-endian T (the host is little-endian: x86-64 and aarch64 Linux).
  template <typename T>
  T read(const char* what) {
    require(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_ + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  // A GGUF string: uint64 byte length, then the bytes (no terminator).
  std::string read_string(const char* what) {
    const uint64_t start = offset_;
    const auto length = read<uint64_t>(what);
    if (length > remaining()) {
      fail_at(start, "{} of {} bytes extends past the end of the file (size {})", what, length,
              size_);
    }
    std::string text(reinterpret_cast<const char*>(bytes_ + offset_), length);
    offset_ += length;
    return text;
  }

  // Throws realizar::Error "<path>: offset <offset>: <context>: <message>".
  template <typename... Args>
  [[noreturn]] void fail_at(uint64_t offset, fmt::format_string<Args...> format,
                            Args&&... args) const {
    const std::string message = fmt::format(format, std::forward<Args>(args)...);
    if (context_.empty()) fail("{}: offset {}: {}", path_, offset, message);
    fail("{}: offset {}: {}: {}", path_, offset, context_, message);
  }

 private:
  void require(uint64_t bytes, const char* what) const {
    if (bytes > remaining()) {
      fail_at(offset_, "truncated file: the {} needs {} bytes, only {} remain", what, bytes,
              remaining());
    }
  }

  std::string path_;
  std::string context_;
  const uint8_t* bytes_;
  uint64_t size_;
  uint64_t offset_ = 0;
};

}  // namespace realizar::gguf
