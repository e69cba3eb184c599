// Reading a whole text file named on the command line (apr perplexity, apr tokenize --file).
#pragma once

#include <string>

namespace realizar::cli {

// The file's bytes; throws realizar::Error when it does not exist or cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace realizar::cli
