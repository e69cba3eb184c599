// Where realizar keeps its files on a user's machine.
#pragma once

#include <filesystem>

namespace realizar {

// $REALIZAR_HOME if set and not empty, else $HOME/.cache/realizar (Ollama keeps ~/.ollama, the
// Hugging Face hub ~/.cache/huggingface). Throws realizar::Error when neither variable is set.
// The directory is not created.
std::filesystem::path realizar_home();

}  // namespace realizar
