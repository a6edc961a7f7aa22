// HttpServer: a small wrapper over libmicrohttpd for the peer protocol.
//
// One thread per connection (handlers may block on disk and on forwarding),
// HTTP/1.1 keep-alive, request bodies buffered in memory up to a limit, files
// served zero-copy from a descriptor. The handler sees the whole request
// once its body has arrived; a client that disconnects before that never
// reaches the handler. Exceptions never cross into libmicrohttpd.
//
// Thread-safety: the handler is called concurrently from many threads.
// StopAccepting/Drain/Stop are called from one controlling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "meshfs/core/status.h"
#include "meshfs/net/peer_client.h"

struct MHD_Daemon;

namespace meshfs::net {

struct ServerRequest {
  std::string method;
  std::string path;                            // percent-decoded path, no query
  std::map<std::string, std::string> headers;  // names lowercased
  std::map<std::string, std::string> query;
  std::string body;
  bool body_too_large = false;  // the body exceeded max_body_bytes and was dropped
  bool server_busy = false;     // dropped: all requests together buffer too much
  uint64_t body_bytes = 0;      // bytes received (even if dropped)
};

struct ServerResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  int fd = -1;  // if >= 0: the body is this file's first fd_size bytes (closed after)
  uint64_t fd_size = 0;
  // With fd: drop the file's pages from the page cache once the client has
  // read the body (POSIX_FADV_DONTNEED at its next request or at close).
  bool drop_pages_after = false;
  std::map<std::string, std::string> headers;

  static ServerResponse Text(int status, std::string text) {
    ServerResponse r;
    r.status = status;
    r.body = std::move(text);
    if (r.body.empty() || r.body.back() != '\n') r.body.push_back('\n');
    return r;
  }
  static ServerResponse Json(int status, std::string json) {
    ServerResponse r;
    r.status = status;
    r.content_type = "application/json";
    r.body = std::move(json);
    return r;
  }
};

class HttpServer final {
 public:
  struct Options {
    PeerAddress listen;           // port 0: pick a free port
    uint64_t max_body_bytes = 0;  // larger bodies are dropped (body_too_large)
    unsigned max_connections = 1024;
    unsigned idle_timeout_s = 60;              // keep-alive connections idle this long are closed
    uint64_t max_buffered_bytes = 1ull << 30;  // request bodies held at once, all connections
  };
  using Handler = std::function<ServerResponse(ServerRequest&)>;
  // Called after every response: (method, path, status, request body bytes,
  // response body bytes, seconds from first byte to response queued).
  using Observer = std::function<void(const ServerRequest&, int, uint64_t, double)>;

  // Binds and starts serving. InvalidArgument / IOError naming the address
  // when it cannot listen.
  static Result<std::unique_ptr<HttpServer>> Start(Options options, Handler handler,
                                                   Observer observer = nullptr);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const { return port_; }
  // Closes the listening socket; existing connections are still served.
  void StopAccepting();
  // Waits until no request is in flight (or `timeout_ms` passed). Returns
  // true if everything finished.
  bool Drain(int timeout_ms);
  // Closes every connection and joins the threads. Idempotent.
  void Stop();

  struct Conn;  // per-request state (internal)

 private:
  HttpServer(Options options, Handler handler, Observer observer);

  Options options_;
  Handler handler_;
  Observer observer_;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> buffered_{0};  // bytes of request bodies held now
  bool accepting_ = true;

  friend struct HttpServerCallbacks;
};

}  // namespace meshfs::net
