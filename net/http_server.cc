// libmicrohttpd wrapper (see http_server.h).
#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "meshfs/core/log.h"

namespace meshfs::net {
namespace {

constexpr size_t kConnectionMemory = 256 * 1024;

// Per TCP connection (MHD's socket context): the files of responses sent
// with ServerResponse::drop_pages_after whose pages are still to be dropped.
// Not when the response is sent: sendfile(2) hands the socket references to
// the page-cache pages, and the kernel keeps a page that is referenced.
// When the client sends its next request it has read the body, but the
// kernel can free the socket's buffers a little later (within 2 ms in most
// tries here, in an idle moment up to half a second), so a file whose last
// page is still cached after the drop is tried again at the next requests,
// for up to kDropForMs, and at the close.
struct Socket {
  static constexpr int64_t kDropForMs = 2000;
  static constexpr size_t kMaxPending = 16;
  struct Pending {
    int fd;
    off_t size;
    std::chrono::steady_clock::time_point until;
  };
  // Fixed storage: recording a file never allocates, so it cannot fail.
  std::array<Pending, kMaxPending> pending;
  size_t count = 0;

  void Add(int fd, off_t size) {
    if (count == kMaxPending) {  // the oldest gives way
      ::close(pending[0].fd);
      std::move(pending.begin() + 1, pending.end(), pending.begin());
      --count;
    }
    pending[count++] = {fd, size,
                        std::chrono::steady_clock::now() + std::chrono::milliseconds(kDropForMs)};
  }

  // Tries to drop every pending file's pages; `last`: gives up on the rest.
  void DropPages(bool last) {
    const auto now = std::chrono::steady_clock::now();
    size_t kept = 0;
    for (size_t i = 0; i < count; ++i) {
      const Pending& p = pending[i];
      (void)::posix_fadvise(p.fd, 0, 0, POSIX_FADV_DONTNEED);  // a hint only
      if (!last && now < p.until && StillCached(p)) {
        pending[kept++] = p;
      } else {
        ::close(p.fd);
      }
    }
    count = kept;
  }

  // Whether the file's last page is in the page cache (a read that must
  // not wait for the disk succeeds).
  static bool StillCached(const Pending& p) {
    char c;
    iovec v{&c, 1};
    return p.size > 0 && ::preadv2(p.fd, &v, 1, p.size - 1, RWF_NOWAIT) == 1;
  }
};

Socket* SocketOf(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return info == nullptr ? nullptr : static_cast<Socket*>(info->socket_context);
}

}  // namespace

struct HttpServer::Conn {
  ServerRequest request;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  int status = 0;
  uint64_t response_bytes = 0;
  uint64_t accounted = 0;  // body bytes counted in HttpServer::buffered_
  bool handled = false;
};

struct HttpServerCallbacks {
  static MHD_Result CollectValue(void* cls, MHD_ValueKind, const char* key, const char* value) {
    auto* map = static_cast<std::map<std::string, std::string>*>(cls);
    if (key == nullptr) return MHD_YES;
    std::string k(key);
    for (char& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    (*map)[k] = value == nullptr ? "" : value;
    return MHD_YES;
  }

  static MHD_Result Queue(MHD_Connection* connection, HttpServer::Conn* conn,
                          ServerResponse& resp) {
    MHD_Response* r = nullptr;
    if (resp.fd >= 0) {
      if (Socket* socket = resp.drop_pages_after ? SocketOf(connection) : nullptr) {
        const int fd = ::fcntl(resp.fd, F_DUPFD_CLOEXEC, 0);  // MHD closes resp.fd
        if (fd >= 0) socket->Add(fd, static_cast<off_t>(resp.fd_size));
      }
      r = MHD_create_response_from_fd64(resp.fd_size, resp.fd);
      conn->response_bytes = resp.fd_size;
      if (r == nullptr) ::close(resp.fd);
    } else {
      r = MHD_create_response_from_buffer(resp.body.size(), resp.body.data(),
                                          MHD_RESPMEM_MUST_COPY);
      conn->response_bytes = resp.body.size();
    }
    if (r == nullptr) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp.content_type.c_str());
    for (const auto& [k, v] : resp.headers) MHD_add_response_header(r, k.c_str(), v.c_str());
    conn->status = resp.status;
    const MHD_Result ret = MHD_queue_response(connection, static_cast<unsigned>(resp.status), r);
    MHD_destroy_response(r);
    return ret;
  }

  static MHD_Result Access(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char* /*version*/, const char* upload_data,
                           size_t* upload_data_size, void** con_cls) {
    auto* server = static_cast<HttpServer*>(cls);
    auto* conn = static_cast<HttpServer::Conn*>(*con_cls);
    try {
      if (conn == nullptr) {
        // The client read the previous response before sending this request.
        if (Socket* socket = SocketOf(connection)) socket->DropPages(/*last=*/false);
        conn = new HttpServer::Conn();
        *con_cls = conn;
        server->in_flight_.fetch_add(1);
        conn->request.method = method;
        conn->request.path = url;
        MHD_get_connection_values(connection, MHD_HEADER_KIND, &CollectValue,
                                  &conn->request.headers);
        MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, &CollectValue,
                                  &conn->request.query);
        auto it = conn->request.headers.find("content-length");
        if (it != conn->request.headers.end()) {
          const uint64_t len = std::strtoull(it->second.c_str(), nullptr, 10);
          if (len > server->options_.max_body_bytes) {
            conn->request.body_too_large = true;
            // Far too large to bother reading: answer now and close.
            if (len > 4 * server->options_.max_body_bytes + (1 << 20)) {
              conn->request.body_bytes = len;
              ServerResponse resp = ServerResponse::Text(413, "request body too large");
              conn->handled = true;
              return Queue(connection, conn, resp);
            }
          } else {
            conn->request.body.reserve(len);
          }
        }
        return MHD_YES;
      }
      if (conn->handled) {
        *upload_data_size = 0;  // discard whatever still arrives
        return MHD_YES;
      }
      if (*upload_data_size > 0) {
        ServerRequest& req = conn->request;
        req.body_bytes += *upload_data_size;
        const uint64_t n = *upload_data_size;
        if (!req.body_too_large && !req.server_busy) {
          if (req.body.size() + n > server->options_.max_body_bytes) {
            req.body_too_large = true;
          } else if (server->buffered_.fetch_add(n) + n > server->options_.max_buffered_bytes) {
            server->buffered_.fetch_sub(n);
            req.server_busy = true;
          } else {
            conn->accounted += n;
            req.body.append(upload_data, n);
          }
          if (req.body_too_large || req.server_busy) {
            server->buffered_.fetch_sub(conn->accounted);
            conn->accounted = 0;
            req.body.clear();
            req.body.shrink_to_fit();
          }
        }
        *upload_data_size = 0;
        return MHD_YES;
      }
      conn->handled = true;
      ServerResponse resp;
      try {
        resp = server->handler_(conn->request);
      } catch (const std::exception& e) {
        LogError("node", std::string("request handler failed: ") + e.what());
        resp = ServerResponse::Text(500, "internal error");
      }
      return Queue(connection, conn, resp);
    } catch (...) {
      return MHD_NO;
    }
  }

  static void Completed(void* cls, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    auto* server = static_cast<HttpServer*>(cls);
    auto* conn = static_cast<HttpServer::Conn*>(*con_cls);
    if (conn == nullptr) return;
    *con_cls = nullptr;
    if (server->observer_ && conn->status != 0) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - conn->start).count();
      try {
        server->observer_(conn->request, conn->status, conn->response_bytes, secs);
      } catch (...) {
      }
    }
    server->buffered_.fetch_sub(conn->accounted);
    delete conn;
    server->in_flight_.fetch_sub(1);
  }

  static void ConnectionEvent(void*, MHD_Connection*, void** socket_context,
                              MHD_ConnectionNotificationCode code) {
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      *socket_context = new (std::nothrow) Socket();
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      auto* socket = static_cast<Socket*>(*socket_context);
      *socket_context = nullptr;
      if (socket != nullptr) socket->DropPages(/*last=*/true);
      delete socket;
    }
  }

  static void Logger(void*, const char* fmt, va_list ap) {
    char buf[512];
    std::vsnprintf(buf, sizeof(buf), fmt, ap);
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    LogDebug("http", s);
  }
};

HttpServer::HttpServer(Options options, Handler handler, Observer observer)
    : options_(std::move(options)), handler_(std::move(handler)), observer_(std::move(observer)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(Options options, Handler handler,
                                                      Observer observer) {
  std::unique_ptr<HttpServer> server(
      new HttpServer(std::move(options), std::move(handler), std::move(observer)));
  const std::string where = server->options_.listen.ToString();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(server->options_.listen.port);
  const int gai = ::getaddrinfo(server->options_.listen.host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0 || res == nullptr) {
    return Status::InvalidArgument("cannot listen on " + where + ": " + ::gai_strerror(gai));
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  const bool v6 = res->ai_family == AF_INET6;
  ::freeaddrinfo(res);

  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG | MHD_USE_POLL;
  if (v6) flags |= MHD_USE_IPv6;
  // The port is passed in the sockaddr; MHD's own port argument is ignored then.
  server->daemon_ = MHD_start_daemon(
      flags, server->options_.listen.port, nullptr, nullptr, &HttpServerCallbacks::Access,
      server.get(), MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&addr),
      MHD_OPTION_NOTIFY_COMPLETED, &HttpServerCallbacks::Completed, server.get(),
      MHD_OPTION_NOTIFY_CONNECTION, &HttpServerCallbacks::ConnectionEvent, nullptr,
      MHD_OPTION_CONNECTION_LIMIT, server->options_.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
      server->options_.idle_timeout_s,
      // A slice body arrives in reads of up to ~200 KiB, not in thousands
      // of small ones. Not bigger: libmicrohttpd zeroes the whole pool after
      // every request of a keep-alive connection (a 1 MiB pool cost a 1 MiB
      // memset per PUT).
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<size_t>(kConnectionMemory),
      MHD_OPTION_CONNECTION_MEMORY_INCREMENT, static_cast<size_t>(64 * 1024),
      // Only SO_REUSEADDR (libmicrohttpd's default: a restarted node gets
      // its port back at once), not SO_REUSEPORT, with which a second node
      // on the same port started silently and took half the connections.
      MHD_OPTION_EXTERNAL_LOGGER, &HttpServerCallbacks::Logger, nullptr, MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    return Status::IOError("cannot listen on " + where +
                           ": address in use or not available (is another node running?)");
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info != nullptr ? info->port : server->options_.listen.port;
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::StopAccepting() {
  if (daemon_ == nullptr || !accepting_) return;
  accepting_ = false;
  const MHD_socket fd = MHD_quiesce_daemon(daemon_);
  if (fd != MHD_INVALID_SOCKET) ::close(fd);
}

bool HttpServer::Drain(int timeout_ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (in_flight_.load() > 0) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void HttpServer::Stop() {
  if (daemon_ == nullptr) return;
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace meshfs::net
