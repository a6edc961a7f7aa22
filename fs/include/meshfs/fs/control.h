// The control channel of a mounted volume: a Unix stream socket at
// VOLUME/control.sock through which `meshfs sync|status|peers|cache clear|
// umount` talk to the running `meshfs mount` daemon.
//
// Wire protocol (docs/protocol.md, "Control socket"): newline-delimited JSON.
// The client sends one request line {"v": 1, "op": "<name>", ...} (at most
// kMaxRequestBytes including the newline) and reads response lines until the
// final one: zero or more {"v": 1, "progress": {...}} lines, then exactly one
// {"v": 1, "ok": true, ...fields of the handler's result...} or
// {"v": 1, "ok": false, "error": "<one line>", "code": "<code name>"}.
// A connection may carry several requests one after another. Garbage, a
// wrong "v", a missing "op", an unknown op or an oversized request gets an
// error reply (the oversized one also closes that connection); the server
// keeps serving everyone else.
//
// Socket: created by the daemon with mode 0600 (owned by the mounting user),
// removed by Stop(). A stale socket left by a killed daemon (connect() to it
// is refused) is replaced; a socket that a live daemon answers on makes
// Start() fail with AlreadyExists. Paths longer than sockaddr_un allows are
// reached through /proc/self/fd/N/NAME of their directory.
//
// Agreements with the mount daemon (meshfs mount):
//   * ops it registers, and the fields the CLI reads (all sizes in bytes;
//     extra fields are fine and are shown by --json):
//     "status"  -> {"mountpoint": str, "pid": int, "volume_id": str,
//                   "replicas": int, "offline": bool,
//                   "uploads": {"pending_slices", "pending_bytes",
//                               "errors": int, "last_error": str},
//                   "cache": {"cached_bytes", "cached_slices", "max_bytes",
//                             "hits", "misses"},
//                   "peers": {"configured": int, "reachable": int}}
//     "peers"   -> {"peers": [{"addr": "HOST:PORT", "id": str,
//                   "state": "alive|suspect|dead|unreachable",
//                   "rtt_ms": number (optional)}]}
//     "sync"    request {"timeout_ms": int}: flush open files, wait until
//                   every slice is on R peers, publish the snapshot.
//                   progress {"pending_slices", "pending_bytes"} about once
//                   a second; final {"pending_slices", "pending_bytes",
//                   "published": bool, "last_error": str}. A timeout is NOT
//                   an error reply: it is ok:true with pending_slices > 0.
//     "cache_clear" -> {"freed_bytes", "cached_bytes", "pending_slices"}
//     "unmount" request {"timeout_ms": int, "force": bool}: like "sync",
//                   then unmount (the CLI also runs `fusermount3 -u` if the
//                   kernel mount is still there 3 s after an "unmounted"
//                   reply, and waits for the daemon's pid to exit, at most
//                   10 s). Same progress lines; final
//                   {"unmounted": bool, "pending_slices", "pending_bytes",
//                   "last_error": str}. Without force and with slices still
//                   pending at the timeout it stays mounted (unmounted:
//                   false); with force it unmounts anyway and the queue stays
//                   on disk for the next mount.
//   * it writes VOLUME/mount.json = {"mountpoint": "/abs/path", "pid": N}
//     while mounted, and removes it at exit;
//   * it sets the FUSE fsname (the source field of /proc/self/mountinfo) to
//     the absolute VOLUME path, so a MOUNTPOINT can be resolved to its VOLUME.
//
// Thread-safety: ControlServer and ControlClient methods are thread-safe.
// Handlers run on server threads (one per connected client, never a FUSE
// thread), so several handlers may run at once; a handler must not call
// Stop(), and Stop() waits for running handlers to finish and send their
// reply. Exceptions thrown by a handler become an error reply.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "meshfs/core/status.h"

namespace meshfs::fs {

inline constexpr int kControlProtocolVersion = 1;
inline constexpr size_t kMaxRequestBytes = 64 * 1024;
inline constexpr size_t kMaxResponseBytes = 16 * 1024 * 1024;

// Parses one request line (without the newline): a JSON object with
// "v" == kControlProtocolVersion and a string "op". InvalidArgument naming
// what is wrong otherwise; TooLarge over kMaxRequestBytes. Never throws.
Result<nlohmann::json> ParseControlRequest(std::string_view line);

// Parses one reply line: a progress line or a final reply, returned as is
// (an object with "progress", or with a boolean "ok"). Corruption otherwise.
// Never throws.
Result<nlohmann::json> ParseControlReply(std::string_view line);

class ControlServer final {
 public:
  // Called by a handler to send a progress line {"v":1,"progress": <value>}
  // to the client. Cheap; failures (client gone) are ignored.
  using Progress = std::function<void(const nlohmann::json&)>;
  // Returns the fields of the final reply (an object; "ok" and "v" are
  // added), or a Status that becomes {"ok": false, "error": message}.
  using Handler =
      std::function<Result<nlohmann::json>(const nlohmann::json& request, const Progress& progress)>;

  // Binds and listens on `socket_path` (mode 0600) and starts the accept
  // thread. AlreadyExists if a live server answers there; a stale socket is
  // replaced. Paths longer than sockaddr_un allows work too (through the
  // directory's /proc/self/fd entry).
  static Result<std::unique_ptr<ControlServer>> Start(const std::filesystem::path& socket_path);
  ~ControlServer();  // Stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Registers (or replaces) the handler of `op`. May be called at any time;
  // requests for an op without a handler get an "unknown op" error.
  void RegisterHandler(std::string op, Handler handler);

  // Stops accepting, closes every connection, waits for the server threads
  // (handlers still running are waited for) and removes the socket file.
  // Idempotent.
  void Stop();

  const std::filesystem::path& socket_path() const { return path_; }

 private:
  struct Connection;
  explicit ControlServer(std::filesystem::path path, int listen_fd, int wake_fd[2]);
  void AcceptLoop();
  void Serve(const std::shared_ptr<Connection>& conn);
  void HandleLine(Connection& conn, std::string_view line);
  void ReapFinished();

  const std::filesystem::path path_;
  int listen_fd_ = -1;
  int wake_read_ = -1;   // self-pipe: Stop() writes to wake the poll loops
  int wake_write_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;

  std::mutex mu_;  // guards handlers_, connections_, stopped_
  std::map<std::string, Handler> handlers_;
  std::vector<std::shared_ptr<Connection>> connections_;
  bool stopped_ = false;
};

// One connection to a control socket (used by the CLI).
class ControlClient final {
 public:
  // Connects to `socket_path`. Unavailable when nothing answers there (no
  // daemon, or a stale socket); NotFound when the socket does not exist.
  static Result<std::unique_ptr<ControlClient>> Connect(const std::filesystem::path& socket_path,
                                                        int timeout_ms = 2000);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `request` (an object; "v" is added), calls `on_progress` for every
  // progress line and returns the final reply object (with "ok": true). An
  // {"ok": false} reply becomes a Status with the server's message and code.
  // `timeout_ms` bounds the whole call (< 0: no bound); TimedOut then.
  Result<nlohmann::json> Call(const nlohmann::json& request,
                              const std::function<void(const nlohmann::json&)>& on_progress = {},
                              int timeout_ms = -1);

 private:
  explicit ControlClient(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::mutex mu_;  // one call at a time per connection
  std::string buffer_;
};

}  // namespace meshfs::fs
