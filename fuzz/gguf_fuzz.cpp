// libFuzzer target for the GGUF reader. Each input is written to an in-memory file (memfd) and
// opened through File::open, so the production path (open, fstat, mmap, parse) is what runs.
// Any realizar::Error is an expected outcome; a crash, sanitizer report, leak or hang is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "realizar/error.h"
#include "realizar/gguf.h"

namespace {

// Reads everything a consumer would: values, display forms, JSON, every tensor's first and last
// byte (so a wrong bounds check shows up as an ASan report).
void consume(const realizar::gguf::File& file) {
  size_t checksum = 0;
  for (const auto& [key, value] : file.metadata()) {
    checksum += key.size() + value.to_string(16).size() + value.to_json().dump().size();
  }
  for (const auto& info : file.tensors()) {
    const uint8_t* data = file.tensor_data(info);
    checksum += data[0] + data[info.n_bytes - 1];
    checksum += file.tensor(info.name).n_elements;
  }
  if (checksum == 1) std::abort();  // keeps the reads from being optimized away
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("gguf_fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    consume(realizar::gguf::File::open(path));
  } catch (const realizar::Error&) {
  }
  close(fd);
  return 0;
}
