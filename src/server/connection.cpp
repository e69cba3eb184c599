#include "server/connection.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <memory>

namespace realizar::server {
namespace {

// The numeric host and port of a socket address, formatted as cpp-httplib formats them.
bool address_of(const sockaddr_storage& addr, socklen_t length, std::string& host, int& port) {
  char text[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&addr), length, text, sizeof(text), nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return false;
  }
  host = text;
  if (addr.ss_family == AF_INET) {
    port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  } else {
    return false;
  }
  return true;
}

bool matches(int fd, const Endpoints& want) {
  sockaddr_storage addr{};
  socklen_t length = sizeof(addr);
  std::string host;
  int port = -1;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0 || !address_of(addr, length, host, port) ||
      port != want.local_port || host != want.local_addr) {
    return false;
  }
  length = sizeof(addr);
  return getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0 && address_of(addr, length, host, port) &&
         port == want.remote_port && host == want.remote_addr;
}

}  // namespace

ConnectionProbe::ConnectionProbe(const Endpoints& endpoints) {
  if (endpoints.local_port < 0 || endpoints.remote_port < 0) return;
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir("/proc/self/fd"), closedir);
  if (!dir) return;
  const int own = dirfd(dir.get());
  while (const dirent* entry = readdir(dir.get())) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own) continue;
    if (matches(static_cast<int>(fd), endpoints)) {
      fd_ = static_cast<int>(fd);
      return;
    }
  }
}

bool ConnectionProbe::client_gone() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLRDHUP, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace realizar::server
