#include "util/paths.h"

#include <cstdlib>

#include "realizar/error.h"

namespace realizar {

std::filesystem::path realizar_home() {
  const char* home = std::getenv("REALIZAR_HOME");
  if (home != nullptr && *home != '\0') return home;
  const char* user_home = std::getenv("HOME");
  if (user_home == nullptr || *user_home == '\0') fail("neither REALIZAR_HOME nor HOME is set");
  return std::filesystem::path(user_home) / ".cache" / "realizar";
}

}  // namespace realizar
