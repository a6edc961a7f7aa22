// The control socket server and client (see meshfs/fs/control.h).
#include "meshfs/fs/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string_view>
#include <utility>

#include "meshfs/core/log.h"

namespace meshfs::fs {

namespace {

constexpr std::string_view kComponent = "control";
constexpr int kSendTimeoutSeconds = 10;

// A sockaddr_un for `path`. A path longer than sun_path (deep volume
// directories) is reached through /proc/self/fd/N/NAME with N an O_PATH
// descriptor of its directory, held open as long as this object lives.
class SocketAddress {
 public:
  static Result<std::unique_ptr<SocketAddress>> Make(const std::filesystem::path& path) {
    auto a = std::unique_ptr<SocketAddress>(new SocketAddress());
    a->addr_.sun_family = AF_UNIX;
    std::string s = path.native();
    if (s.empty()) return Status::InvalidArgument("empty control socket path");
    if (s.size() >= sizeof(a->addr_.sun_path)) {
      const std::string name = path.filename().native();
      a->dir_fd_ = ::open(path.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (a->dir_fd_ < 0) return Status::FromErrno("open " + path.parent_path().native(), errno);
      s = "/proc/self/fd/" + std::to_string(a->dir_fd_) + "/" + name;
      if (s.size() >= sizeof(a->addr_.sun_path)) {
        return Status::InvalidArgument("control socket name '" + name + "' is too long");
      }
    }
    std::memcpy(a->addr_.sun_path, s.data(), s.size());
    return a;
  }
  ~SocketAddress() {
    if (dir_fd_ >= 0) ::close(dir_fd_);
  }
  const sockaddr_un& addr() const { return addr_; }

 private:
  SocketAddress() = default;
  sockaddr_un addr_{};
  int dir_fd_ = -1;
};

// Connects a new blocking socket to `path`; returns the fd or -errno.
int ConnectRaw(const sockaddr_un& addr) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

// Writes all of `data`; false if the peer is gone or the send timed out.
bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string ReplyLine(nlohmann::json reply) {
  reply["v"] = kControlProtocolVersion;
  // Invalid UTF-8 from a handler must not throw: replace it.
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string ErrorLine(const Status& status) {
  nlohmann::json reply = {{"ok", false},
                          {"error", status.message()},
                          {"code", std::string(CodeName(status.code()))}};
  return ReplyLine(std::move(reply));
}

Code CodeFromName(std::string_view name) {
  for (int c = static_cast<int>(Code::kNotFound); c <= static_cast<int>(Code::kAborted); ++c) {
    if (CodeName(static_cast<Code>(c)) == name) return static_cast<Code>(c);
  }
  return Code::kIOError;
}

}  // namespace

Result<nlohmann::json> ParseControlRequest(std::string_view line) {
  if (line.size() >= kMaxRequestBytes) {
    return Status::TooLarge("request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
  }
  nlohmann::json request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) {
    return Status::InvalidArgument("request is not a JSON object");
  }
  auto v = request.find("v");
  if (v == request.end() || !v->is_number_integer() ||
      v->get<int64_t>() != kControlProtocolVersion) {
    return Status::InvalidArgument(
        "unsupported control protocol version (this daemon speaks v" +
        std::to_string(kControlProtocolVersion) + "); use the meshfs binary of the mount");
  }
  auto op = request.find("op");
  if (op == request.end() || !op->is_string()) {
    return Status::InvalidArgument("request has no \"op\" string");
  }
  return request;
}

Result<nlohmann::json> ParseControlReply(std::string_view line) {
  if (line.size() > kMaxResponseBytes) {
    return Status::TooLarge("reply from the mount daemon is too large");
  }
  nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) {
    return Status::Corruption("the mount daemon sent a reply that is not JSON");
  }
  if (reply.contains("progress")) return reply;
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean()) {
    return Status::Corruption("the mount daemon sent a reply without \"ok\"");
  }
  return reply;
}

// One accepted client. `fd` is closed by the serving thread when it ends.
struct ControlServer::Connection {
  int fd = -1;
  std::thread thread;
  std::atomic<bool> done{false};
  std::mutex write_mu;  // progress may be sent from any thread
  std::string buffer;

  bool Send(std::string_view line) {
    std::lock_guard<std::mutex> lock(write_mu);
    return WriteAll(fd, line);
  }
};

ControlServer::ControlServer(std::filesystem::path path, int listen_fd, int wake_fd[2])
    : path_(std::move(path)), listen_fd_(listen_fd), wake_read_(wake_fd[0]), wake_write_(wake_fd[1]) {}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(
    const std::filesystem::path& socket_path) {
  MESHFS_ASSIGN_OR_RETURN(auto address, SocketAddress::Make(socket_path));
  const sockaddr_un& addr = address->addr();
  const std::string& s = socket_path.native();

  struct stat st {};
  if (::lstat(s.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::AlreadyExists("control socket path " + s +
                                   " exists and is not a socket; remove it");
    }
    int fd = ConnectRaw(addr);
    if (fd >= 0) {
      ::close(fd);
      return Status::AlreadyExists("a meshfs daemon already answers on " + s +
                                   " (is the volume mounted elsewhere?)");
    }
    // Nothing listens: a stale socket from a killed daemon. Replace it.
    LogInfo(kComponent, "replacing stale control socket " + s);
    if (::unlink(s.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno("remove stale control socket " + s, errno);
    }
  }

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("control socket", errno);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EADDRINUSE) {
      return Status::AlreadyExists("control socket " + s + " was created by another process");
    }
    return Status::FromErrno("bind control socket " + s, err);
  }
  // Nobody can connect before listen(), so 0600 is in place before the
  // first client can reach the socket.
  if (::chmod(s.c_str(), 0600) != 0 || ::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(s.c_str());
    return Status::FromErrno("set up control socket " + s, err);
  }
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(s.c_str());
    return Status::FromErrno("control socket pipe", err);
  }
  std::unique_ptr<ControlServer> server(new ControlServer(socket_path, fd, wake));
  server->accept_thread_ = std::thread([p = server.get()] { p->AcceptLoop(); });
  return server;
}

ControlServer::~ControlServer() { Stop(); }

void ControlServer::RegisterHandler(std::string op, Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handlers_[std::move(op)] = std::move(handler);
}

void ControlServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  stopping_ = true;
  char byte = 1;
  // The pipe is never drained: every poll loop sees it readable from now on.
  [[maybe_unused]] ssize_t n = ::write(wake_write_, &byte, 1);
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns.swap(connections_);
  }
  // Serving threads wake on the pipe; one running a handler finishes it and
  // sends its reply first (sends are bounded by SO_SNDTIMEO).
  for (auto& c : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
  ::close(listen_fd_);
  // Remove the socket only if it is still the one we bound (a new daemon may
  // have replaced a socket it believed stale).
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    ::unlink(path_.c_str());
  }
  ::close(wake_read_);
  ::close(wake_write_);
}

void ControlServer::ReapFinished() {
  std::vector<std::shared_ptr<Connection>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if ((*it)->done) {
        finished.push_back(*it);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) c->thread.join();
}

void ControlServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    int r = ::poll(fds, 2, 1000);
    ReapFinished();
    if (r < 0) {
      if (errno == EINTR) continue;
      LogError(kComponent, std::string("poll: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0 || stopping_) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        LogWarn(kComponent, std::string("accept: ") + std::strerror(errno));
        // EMFILE and friends: do not spin.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    timeval tv{kSendTimeoutSeconds, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    auto conn = std::make_shared<Connection>();
    conn->fd = fd;
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) {
      ::close(fd);
      return;
    }
    connections_.push_back(conn);
    conn->thread = std::thread([this, conn] { Serve(conn); });
  }
}

void ControlServer::Serve(const std::shared_ptr<Connection>& conn) {
  char chunk[4096];
  bool open = true;
  while (open && !stopping_) {
    pollfd fds[2] = {{conn->fd, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    ssize_t n = ::recv(conn->fd, chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    if (n == 0) break;  // client closed
    conn->buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (;;) {
      size_t nl = conn->buffer.find('\n', start);
      if (nl == std::string::npos) break;
      if (nl - start + 1 > kMaxRequestBytes) {
        start = std::string::npos;
        break;
      }
      HandleLine(*conn, std::string_view(conn->buffer).substr(start, nl - start));
      start = nl + 1;
      if (stopping_) break;
    }
    if (start == std::string::npos || conn->buffer.size() - start > kMaxRequestBytes) {
      conn->Send(ErrorLine(Status::TooLarge("request larger than " +
                                            std::to_string(kMaxRequestBytes) + " bytes")));
      open = false;
    } else {
      conn->buffer.erase(0, start);
    }
  }
  ::close(conn->fd);
  conn->done = true;
}

void ControlServer::HandleLine(Connection& conn, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return;  // blank lines are keep-alives
  Result<nlohmann::json> parsed = ParseControlRequest(line);
  if (!parsed.ok()) {
    conn.Send(ErrorLine(parsed.status()));
    return;
  }
  const nlohmann::json& request = *parsed;
  const std::string name = request["op"].get<std::string>();
  Handler handler;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handlers_.find(name);
    if (it != handlers_.end()) handler = it->second;
  }
  if (!handler) {
    conn.Send(ErrorLine(Status::NotSupported("unknown op '" + name + "'")));
    return;
  }
  Progress progress = [&conn](const nlohmann::json& p) {
    conn.Send(ReplyLine(nlohmann::json{{"progress", p}}));
  };
  std::string out;
  try {
    Result<nlohmann::json> result = handler(request, progress);
    if (!result.ok()) {
      out = ErrorLine(result.status());
    } else {
      nlohmann::json reply = result->is_object() ? std::move(*result)
                                                 : nlohmann::json{{"result", std::move(*result)}};
      reply["ok"] = true;
      out = ReplyLine(std::move(reply));
    }
  } catch (const std::exception& e) {
    out = ErrorLine(Status::IOError(std::string("op '") + name + "' failed: " + e.what()));
  }
  conn.Send(out);
}

// ---------------------------------------------------------------------------

Result<std::unique_ptr<ControlClient>> ControlClient::Connect(
    const std::filesystem::path& socket_path, int timeout_ms) {
  MESHFS_ASSIGN_OR_RETURN(auto address, SocketAddress::Make(socket_path));
  const sockaddr_un& addr = address->addr();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int fd = ConnectRaw(addr);
    if (fd >= 0) return std::unique_ptr<ControlClient>(new ControlClient(fd));
    const int err = -fd;
    if (err == ENOENT) {
      return Status::NotFound("no control socket at " + socket_path.native() +
                              " (the volume is not mounted)");
    }
    // EAGAIN: the listen backlog is full; retry until the deadline.
    if (err != EAGAIN || std::chrono::steady_clock::now() >= deadline) {
      if (err == ECONNREFUSED) {
        return Status::Unavailable("no meshfs daemon answers on " + socket_path.native() +
                                   " (stale socket: the mount daemon is gone)");
      }
      return Status::FromErrno("connect to " + socket_path.native(), err);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<nlohmann::json> ControlClient::Call(
    const nlohmann::json& request, const std::function<void(const nlohmann::json&)>& on_progress,
    int timeout_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!request.is_object()) return Status::InvalidArgument("control request must be an object");
  nlohmann::json req = request;
  req["v"] = kControlProtocolVersion;
  std::string line = req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (line.size() > kMaxRequestBytes) {
    return Status::TooLarge("control request larger than " + std::to_string(kMaxRequestBytes) +
                            " bytes");
  }
  if (fd_ < 0) return Status::Unavailable("control connection is closed");
  if (!WriteAll(fd_, line)) return Status::FromErrno("send control request", errno);

  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  char chunk[4096];
  for (;;) {
    size_t nl;
    while ((nl = buffer_.find('\n')) != std::string::npos) {
      std::string reply_line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      MESHFS_ASSIGN_OR_RETURN(nlohmann::json reply, ParseControlReply(reply_line));
      if (auto p = reply.find("progress"); p != reply.end()) {
        if (on_progress) on_progress(*p);
        continue;
      }
      auto ok = reply.find("ok");
      if (ok->get<bool>()) return reply;
      std::string message = reply.value("error", std::string("request failed"));
      std::string code = reply.value("code", std::string("io error"));
      return Status(CodeFromName(code), message);
    }
    if (buffer_.size() > kMaxResponseBytes) {
      return Status::TooLarge("reply from the mount daemon is too large");
    }
    int wait_ms = -1;
    if (timeout_ms >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return Status::TimedOut("the mount daemon did not answer '" +
                                request.value("op", std::string("?")) + "' within " +
                                std::to_string(timeout_ms / 1000) + " s");
      }
      wait_ms = static_cast<int>(left.count());
    }
    pollfd pfd{fd_, POLLIN, 0};
    int r = ::poll(&pfd, 1, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("poll control socket", errno);
    }
    if (r == 0) continue;  // deadline check above
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Status::FromErrno("read control reply", errno);
    }
    if (n == 0) {
      return Status::Unavailable("the mount daemon closed the control connection before replying");
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace meshfs::fs
