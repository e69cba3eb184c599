#include "cli/text_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "realizar/error.h"

namespace realizar::cli {

std::string read_text_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) fail("text file {} does not exist", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace realizar::cli
