// Resumable, verified download of one file (see download.h).
#include "hub/download.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "hub/http.h"
#include "realizar/error.h"
#include "util/progress.h"
#include "util/sha256.h"

namespace realizar::hub {
namespace {

namespace fs = std::filesystem;

// The .partial file: opened (created if absent), locked, and hashed so far; each append extends
// both, so that the digest always covers exactly the bytes on disk.
class PartialFile {
 public:
  explicit PartialFile(fs::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot open: {}", path_.string(), std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fail("{} is being written by another apr process", path_.string());
    }
    struct stat info {};
    if (::fstat(fd_, &info) != 0) fail("{}: cannot stat: {}", path_.string(), std::strerror(errno));
    size_ = static_cast<uint64_t>(info.st_size);
    hash_existing();
  }
  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  uint64_t size() const { return size_; }

  void append(std::string_view bytes) {
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n =
          ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(size_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("{}: cannot write: {}", path_.string(), std::strerror(errno));
      done += static_cast<size_t>(n);
    }
    sha_->update(bytes.data(), bytes.size());
    size_ += bytes.size();
  }

  void restart() {
    if (::ftruncate(fd_, 0) != 0)
      fail("{}: cannot truncate: {}", path_.string(), std::strerror(errno));
    size_ = 0;
    sha_ = std::make_unique<Sha256>();
  }

  std::string digest() { return sha_->hex_digest(); }

  // Bytes that must not be resumed from.
  void remove() {
    std::error_code ignored;
    fs::remove(path_, ignored);
  }

  // Flushes to disk and gives the file its final name (atomically replacing any old one).
  void commit(const fs::path& final_path) {
    if (::fsync(fd_) != 0) fail("{}: cannot sync: {}", path_.string(), std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    std::error_code error;
    fs::rename(path_, final_path, error);
    if (error)
      fail("cannot rename {} to {}: {}", path_.string(), final_path.string(), error.message());
  }

 private:
  void hash_existing() {
    sha_ = std::make_unique<Sha256>();
    std::vector<char> buffer(size_t{1} << 20);
    for (uint64_t at = 0; at < size_;) {
      const ssize_t n = ::pread(fd_, buffer.data(), buffer.size(), static_cast<off_t>(at));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("{}: cannot read: {}", path_.string(), std::strerror(errno));
      sha_->update(buffer.data(), static_cast<size_t>(n));
      at += static_cast<uint64_t>(n);
    }
  }

  fs::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::unique_ptr<Sha256> sha_;
};

// The first byte of "Content-Range: bytes START-END/TOTAL".
std::optional<uint64_t> range_start(std::string_view content_range) {
  if (!content_range.starts_with("bytes ")) return std::nullopt;
  content_range.remove_prefix(6);
  uint64_t start = 0;
  const auto [end, error] =
      std::from_chars(content_range.data(), content_range.data() + content_range.size(), start);
  if (error != std::errc() || end == content_range.data() + content_range.size() || *end != '-') {
    return std::nullopt;
  }
  return start;
}

// One download: the file, its progress display and the state of the current attempt.
class Download {
 public:
  Download(const DownloadTarget& target, const HubSettings& settings)
      : target_(target),
        settings_(settings),
        name_(target.path.filename().string()),
        file_(partial_path(target.path)),
        progress_(name_, 0, Progress::Unit::Bytes) {
    if (file_.size() > target_.size) file_.restart();
    resumed_ = file_.size();
    progress_.set_total(target_.size - resumed_);
    if (resumed_ > 0) {
      progress_.note(fmt::format("apr: {}: resuming at {} of {}", name_,
                                 Progress::format_amount(resumed_, Progress::Unit::Bytes),
                                 Progress::format_amount(target_.size, Progress::Unit::Bytes)));
    }
  }

  std::string run() {
    with_retries(
        settings_, name_, [this] { return attempt(); },
        [this](const std::string& line) { progress_.note("apr: " + line); });
    progress_.finish(/*always_report=*/true);
    const std::string digest = file_.digest();
    if (!target_.sha256.empty() && digest != target_.sha256) {
      file_.remove();
      fail(
          "{}: the SHA-256 of the downloaded bytes is {}, the hub's is {}; the download was "
          "deleted",
          name_, digest, target_.sha256);
    }
    file_.commit(target_.path);
    return digest;
  }

 private:
  // std::nullopt when the file is complete, else why this attempt fell short.
  std::optional<std::string> attempt() {
    if (file_.size() == target_.size) return std::nullopt;
    problem_.clear();
    too_long_ = false;
    first_piece_ = true;
    const HttpRequest request{target_.url, settings_.token, file_.size(), settings_.stall_seconds};
    const HttpAttempt response = http_get(
        request,
        [this](const HttpAttempt& so_far, std::string_view piece) { return take(so_far, piece); });
    if (too_long_) {
      file_.remove();
      fail("{}: the server sent more than the {} bytes the hub lists", name_, target_.size);
    }
    if (!problem_.empty()) return problem_;
    if (!response.transport_error.empty()) {
      if (response.retriable) return response.transport_error;
      fail("{}: {} ({})", name_, response.transport_error, response.url);
    }
    if (response.status == 416) {  // the range is past the server's end: start over
      file_.restart();
      return std::string("the server refused the range (HTTP 416)");
    }
    if (response.status != 200 && response.status != 206) {
      if (retriable_status(response.status)) return fmt::format("HTTP {}", response.status);
      throw HttpStatusError(response);
    }
    if (file_.size() < target_.size) {
      return fmt::format("the transfer ended after {} of {} bytes", file_.size(), target_.size);
    }
    return std::nullopt;
  }

  // The body callback: checks where the server resumed, then appends.
  bool take(const HttpAttempt& response, std::string_view piece) {
    if (first_piece_) {
      first_piece_ = false;
      if (response.status == 200 && file_.size() > 0) {
        progress_.note(fmt::format("apr: {}: the server ignored the range; starting over", name_));
        restart();
      } else if (response.status == 206 && range_start(response.content_range) != file_.size()) {
        problem_ = fmt::format("the server resumed at \"{}\", not at byte {}",
                               response.content_range, file_.size());
        restart();
        return false;
      }
    }
    if (file_.size() + piece.size() > target_.size) {
      too_long_ = true;
      return false;
    }
    file_.append(piece);
    progress_.update(file_.size() - resumed_);
    return true;
  }

  void restart() {
    file_.restart();
    resumed_ = 0;
    progress_.set_total(target_.size);
  }

  const DownloadTarget& target_;
  const HubSettings& settings_;
  std::string name_;
  PartialFile file_;
  Progress progress_;
  uint64_t resumed_ = 0;  // bytes present before this run (not counted in the display)
  std::string problem_;
  bool too_long_ = false;
  bool first_piece_ = true;
};

}  // namespace

fs::path partial_path(const fs::path& path) { return fs::path(path.string() + ".partial"); }

std::string download_file(const DownloadTarget& target, const HubSettings& settings) {
  return Download(target, settings).run();
}

}  // namespace realizar::hub
