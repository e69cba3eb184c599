// A hub repository's file listing (the JSON of /api/models/{repo}/revision/{revision}?blobs=true)
// and the choice of the GGUF model a reference names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/hub.h"

namespace realizar::hub {

struct RepoFile {
  std::string path;    // rfilename: a path inside the repository
  uint64_t size = 0;   // bytes
  std::string sha256;  // lfs.sha256 (lower-case hex); empty for files not stored in LFS
};

struct RepoListing {
  std::string id;      // the repository's name as the hub spells it
  std::string commit;  // "sha": the revision's commit
  std::vector<RepoFile> files;
};

// Parses the model-info JSON: "id" (string, optional: `repo` when absent), "sha" (40 hex
// digits), "siblings" (array of {"rfilename", "size" or "lfs": {"size", "sha256"}}). Throws
// realizar::Error naming `repo` for malformed JSON, a missing field, a digest that is not 64 hex
// digits, or a file name that is absolute, has "..", a backslash or control characters.
RepoListing parse_repo_listing(std::string_view json_text, std::string_view repo);

// The files of the model `reference` names among `listing`'s GGUF files (see pull_model in
// realizar/hub.h for the rule), in part order for a split model. Throws realizar::Error listing
// the GGUF files when none or several match, or naming the parts a split model lacks.
std::vector<RepoFile> select_model_files(const RepoListing& listing,
                                         const ModelReference& reference);

// Whether file name `name` carries quant tag `quant`: case-insensitive, preceded by the start or
// a character other than a letter or digit, followed by the end of the name (before ".gguf" and a
// split postfix) or by '-' or '.'. "model-Q4_K_M.gguf" carries Q4_K_M but not Q4_K.
bool name_has_quant(std::string_view name, std::string_view quant);

// Part number (1-based) and count of a split file name NAME-00001-of-00003.gguf.
struct SplitName {
  std::string prefix;  // NAME, with any folder
  int part = 0;
  int count = 0;
};
std::optional<SplitName> parse_split_name(std::string_view path);

}  // namespace realizar::hub
