// apr: the realizar command line. Dispatches to the registered subcommands and turns every
// realizar::Error into a one-line message and exit code 1.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>

#include "cli/command.h"
#include "cli/options.h"
#include "realizar/error.h"

namespace realizar::cli {
namespace {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace

bool register_command(Command command) {
  registry().push_back(std::move(command));
  return true;
}

const std::vector<Command>& registered_commands() { return registry(); }

namespace {
// A check named `name` (shown in --help) that the value is a number with accept(number) true;
// else "must be <wanted>, got <value>".
CLI::Validator number_check(const char* name, const char* wanted, bool (*accept)(double)) {
  return CLI::Validator(
      [wanted, accept](std::string& value) -> std::string {
        char* end = nullptr;
        const double number = std::strtod(value.c_str(), &end);
        if (value.empty() || *end != '\0' || !accept(number)) {
          return std::string("must be ") + wanted + ", got " + value;
        }
        return {};
      },
      name);
}
}  // namespace

const CLI::Validator kPositive =
    number_check("POSITIVE", "a number greater than 0", [](double v) { return v > 0.0; });
const CLI::Validator kNonNegative =
    number_check("NONNEGATIVE", "a number of at least 0", [](double v) { return v >= 0.0; });

}  // namespace realizar::cli

int main(int argc, char** argv) {
  using namespace realizar::cli;
  CLI::App app{"apr: run large language models stored as GGUF files", "apr"};
  app.require_subcommand(1);
  // CLI11's own texts start in capitals; every other help text here does not. Subcommands copy
  // the help flag when they are added.
  app.set_help_flag("-h,--help", "print this help and exit");
  app.set_version_flag("--version", "apr 0.1.0", "print the version and exit");

  std::vector<Command> commands = registered_commands();
  std::sort(commands.begin(), commands.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, CommandRunner> runners;
  for (const Command& command : commands) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    runners[sub] = command.setup(*sub);
  }

  try {
    std::vector<std::string> args = spell_out_short_aliases(app, argc, argv);
    std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const realizar::Error& e) {
    std::fprintf(stderr, "apr: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "apr: internal error: %s\n", e.what());
    return 2;
  }
  return 1;
}
