// One file from the hub into a directory, resumable and verified: bytes go to NAME.partial
// (locked against a second writer, kept across failures and runs so the next attempt continues
// with Range: bytes=N-), and NAME appears, by rename, only once the size and SHA-256 match.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "realizar/hub.h"

namespace realizar::hub {

struct DownloadTarget {
  std::string url;
  std::filesystem::path path;  // the final name
  uint64_t size = 0;           // bytes, as the hub lists them
  std::string sha256;          // expected hex digest; empty: checked by size only
};

// Downloads `target` with a progress display labelled by its file name, retrying stalls,
// dropped connections and 5xx answers (HubSettings); a 200 answer to a range request starts the
// file over. Returns the file's SHA-256. Throws HttpStatusError for 4xx answers, and
// realizar::Error when the server sends more than `size` bytes or the digest differs (the
// .partial file is deleted then: its bytes are wrong), when the .partial file is locked by another
// process, or after the last attempt.
std::string download_file(const DownloadTarget& target, const HubSettings& settings);

// The .partial name of a file being downloaded.
std::filesystem::path partial_path(const std::filesystem::path& path);

}  // namespace realizar::hub
