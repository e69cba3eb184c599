// apr: the realizar command line. Dispatches to the registered subcommands and turns every
// realizar::Error into a one-line message and exit code 1.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>

#include "cli/command.h"
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

}  // namespace realizar::cli

int main(int argc, char** argv) {
  using namespace realizar::cli;
  CLI::App app{"apr: run large language models stored as GGUF files", "apr"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "apr 0.1.0");

  std::vector<Command> commands = registered_commands();
  std::sort(commands.begin(), commands.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, CommandRunner> runners;
  for (const Command& command : commands) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    runners[sub] = command.setup(*sub);
  }

  try {
    app.parse(argc, argv);
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
