// Subcommands of `apr` register themselves here, one file each (src/cli/<name>.cpp), so adding a
// command never edits main.cpp. `setup` declares the options on the subcommand and returns the
// function that runs it; that function returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace realizar::cli {

using CommandRunner = std::function<int()>;

struct Command {
  std::string name;
  std::string description;
  std::function<CommandRunner(CLI::App&)> setup;
};

// Adds a command; call from a namespace-scope initializer: `const bool r = register_command({...});`
bool register_command(Command command);

const std::vector<Command>& registered_commands();

// The help text of every MODEL argument (resolved by hub::resolve_model).
inline constexpr const char* kModelHelp =
    "GGUF file or model reference: OWNER/REPO[:QUANT][@REVISION] or an alias (apr pull --help)";

// Option checks for numbers. CLI11's PositiveNumber and NonNegativeNumber report a bad value as
// "not in range 0.000000 to 1797...(300 digits)"; these say what is wanted instead.
extern const CLI::Validator kPositive;     // a number greater than 0
extern const CLI::Validator kNonNegative;  // a number of at least 0

}  // namespace realizar::cli
