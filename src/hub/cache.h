// The model cache on disk (layout: realizar/hub.h): where a reference's files go, and its
// manifest.json read and written.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "realizar/hub.h"

namespace realizar::hub {

// realizar_home()/models.
std::filesystem::path models_dir();

// models_dir()/owner/repo/QUANT[@revision] for `reference` (owner and repo lower-cased, '/' in
// the revision as %2F).
std::filesystem::path model_dir(const ModelReference& reference);

// The manifest in `dir`; std::nullopt when there is none. Throws realizar::Error naming the file
// when it is not a manifest (bad JSON, a missing or mistyped field, a file name with a '/').
std::optional<ModelManifest> read_manifest(const std::filesystem::path& dir);

// Writes `manifest` to manifest.json in its directory, atomically (temporary file + rename).
void write_manifest(const ModelManifest& manifest);

// The name of the first of `manifest`'s files that is missing or of another size; "" when all
// are there.
std::string missing_file(const ModelManifest& manifest);

// The current time as ISO 8601 UTC ("2026-12-01T09:30:00Z").
std::string utc_now();

}  // namespace realizar::hub
