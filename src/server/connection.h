// Noticing that an HTTP client went away while its request waits on the engine (queued, or in a
// long prefill, or generating a non-streamed answer), so the request is cancelled and its KV
// blocks freed at once instead of when the answer fails to send.
//
// cpp-httplib 0.11 (Debian 12) gives a handler no handle on its connection; a streaming
// response's DataSink::is_writable() does notice a closed peer, but a plain handler has nothing.
// The probe finds the connection's socket among the process's descriptors by its local and
// remote addresses (unique for an open TCP connection) and asks the kernel whether the peer has
// hung up.
#pragma once

#include <string>

namespace realizar::server {

struct Endpoints {
  std::string local_addr;
  int local_port = -1;
  std::string remote_addr;
  int remote_port = -1;
};

class ConnectionProbe {
 public:
  // Finds the socket; a probe that found none (not a TCP connection) never reports the client gone.
  explicit ConnectionProbe(const Endpoints& endpoints);

  bool found() const { return fd_ >= 0; }
  // True once the client closed or reset the connection (POLLRDHUP / POLLHUP / POLLERR).
  // A half-close (shutdown of the client's sending side) counts as gone: HTTP clients do not
  // half-close while they wait for an answer.
  bool client_gone() const;

 private:
  int fd_ = -1;
};

}  // namespace realizar::server
