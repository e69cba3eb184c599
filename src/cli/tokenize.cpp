// apr tokenize MODEL (--text T | --file F) [--special] [--bos] [--json]
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/text_file.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/hub.h"
#include "realizar/tokenizer.h"
#include "realizar/tokenizer_gguf.h"

namespace realizar::cli {
namespace {

struct TokenizeArgs {
  std::string model;
  std::optional<std::string> text;
  std::optional<std::string> file;
  bool special = false;
  bool bos = false;
  bool json = false;
};

int run_tokenize(const TokenizeArgs& args) {
  const gguf::File file = gguf::File::open(hub::resolve_model(args.model));
  const Tokenizer tokenizer(tokenizer_spec_from_gguf(file));
  const std::string text = args.text ? *args.text : read_text_file(*args.file);
  const std::vector<int32_t> ids = tokenizer.encode(text, args.bos, args.special);

  if (args.json) {
    nlohmann::json tokens = nlohmann::json::array();
    for (int32_t id : ids) {
      // Pieces may be partial UTF-8 (a byte token): give the vocabulary text, which is valid.
      tokens.push_back({{"id", id}, {"piece", tokenizer.token_text(id)}});
    }
    std::cout << nlohmann::json{{"count", ids.size()}, {"tokens", tokens}}.dump() << "\n";
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << "\n";
  return 0;
}

const bool registered = register_command({
    "tokenize", "print the token ids of a text under a model's tokenizer",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<TokenizeArgs>();
      app.add_option("model", args->model, kModelHelp)->required();
      auto* text = app.add_option("--text", args->text, "the text");
      auto* file = app.add_option("--file", args->file, "read the text from this file");
      text->excludes(file);
      app.add_flag("--special", args->special, "parse special-token text such as <|im_start|>");
      app.add_flag("--bos", args->bos, "add BOS/EOS as the model asks");
      app.add_flag("--json", args->json, "print ids with their pieces as JSON");
      app.callback([text, file] {
        if (text->count() + file->count() != 1) {
          throw CLI::ValidationError("give exactly one of --text or --file");
        }
      });
      return [args] { return run_tokenize(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
