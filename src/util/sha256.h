// SHA-256 (FIPS 180-4) through OpenSSL's EVP interface: of a byte range, of a file, or fed in
// pieces. Digests are written as 64 lower-case hex digits, as `sha256sum` and the Hugging Face
// hub print them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

namespace realizar {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const uint8_t> bytes);
  void update(const void* data, size_t size);
  // The digest of everything fed so far as hex; the object cannot be fed afterwards.
  std::string hex_digest();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

std::string sha256_hex(std::span<const uint8_t> bytes);

// Digest of a whole file, read in 1 MiB pieces. Throws realizar::Error naming the file when it
// cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace realizar
