// The CLI speaks one voice: every help text of `apr` and of each subcommand starts in lower case
// (acronyms such as GGUF or TTFT aside), CLI11's own flags included.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace realizar {
namespace {

using testing::run_apr;

// The description of a help line that lists an option ("  -x,--name ..."), a positional
// argument ("  name TEXT ...") or a subcommand (`in_subcommands`): the last field after a run of
// two or more spaces; "" for any other line (usage, headers, footers).
std::string description_of(const std::string& line, bool in_subcommands) {
  if (line.size() < 3 || line.compare(0, 2, "  ") != 0 || line[2] == ' ') return "";
  std::istringstream words(line);
  std::string name, second;
  words >> name >> second;
  const bool positional = second == "TEXT" || second.rfind("INT", 0) == 0 || second.rfind("FLOAT", 0) == 0;
  if (name[0] != '-' && !positional && !in_subcommands) return "";
  size_t start = line.rfind("  ");  // found: the line starts with two spaces
  while (start < line.size() && line[start] == ' ') ++start;
  return line.substr(start);
}

// A capitalized ordinary word ("Print"), not an acronym ("GGUF"), a placeholder ("PROMPT") or a
// proper name.
bool starts_capitalized(const std::string& text) {
  for (const char* name : {"Hugging Face", "OpenAI", "Ollama", "Prometheus"}) {
    if (text.rfind(name, 0) == 0) return false;
  }
  return text.size() >= 2 && std::isupper(static_cast<unsigned char>(text[0])) &&
         std::islower(static_cast<unsigned char>(text[1]));
}

std::vector<std::string> capitalized_lines(const std::vector<std::string>& args) {
  const auto r = run_apr(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> found;
  std::istringstream lines(r.out);
  bool in_subcommands = false;
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] != ' ') in_subcommands = line.rfind("Subcommands:", 0) == 0;
    if (starts_capitalized(description_of(line, in_subcommands))) found.push_back(line);
  }
  return found;
}

TEST(CliHelp, EveryTextStartsInLowerCase) {
  EXPECT_THAT(capitalized_lines({"--help"}), ::testing::IsEmpty());
  for (const char* command : {"bench", "chat", "convert", "inspect", "list", "perplexity", "pull", "quantize", "rm",
                              "run", "serve", "synth", "tokenize"}) {
    EXPECT_THAT(capitalized_lines({command, "--help"}), ::testing::IsEmpty()) << command;
  }
  for (const char* bench : {"serve", "engine"}) {
    EXPECT_THAT(capitalized_lines({"bench", bench, "--help"}), ::testing::IsEmpty()) << "bench " << bench;
  }
}

TEST(CliHelp, TheVersionFlagPrintsTheVersion) {
  const auto r = run_apr({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, ::testing::StartsWith("apr "));
}

}  // namespace
}  // namespace realizar
