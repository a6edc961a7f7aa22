// meshfs mount (and mount.meshfs through main.cc): unlock the volume, open
// the metadata and the stores (CachingStore over the peers), mount with FUSE,
// daemonize (unless -f) after reporting success or failure to the caller,
// serve the control socket, and on unmount or SIGTERM/SIGINT flush and wait
// for uploads (bounded) before exiting 0.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "command.h"
#include "meshfs/cache/caching_store.h"
#include "meshfs/core/log.h"
#include "meshfs/fs/control.h"
#include "meshfs/fs/filesystem.h"
#include "meshfs/fs/fuse_ops.h"
#include "meshfs/fs/mount_options.h"
#include "meshfs/fs/volume.h"
#include "meshfs/net/peer_client.h"
#include "meshfs/net/replicating_store.h"
#include "passphrase.h"

namespace meshfs::cli {
namespace {

using nlohmann::json;
constexpr char kLog[] = "mount";
constexpr int64_t kSignalUploadWaitMs = 5'000;  // SIGTERM: queued uploads resume next mount
// After the loop: `meshfs umount` already waited; the queue is durable anyway.
constexpr int64_t kExitUploadWaitMs = 2'000;

struct MountArgs {
  std::string volume;
  std::string mountpoint;
  std::vector<std::string> options;
  bool foreground = false;
  std::string passphrase_file;
};

MountArgs& Args() {
  static MountArgs a;
  return a;
}

int g_signal_pipe[2] = {-1, -1};

void OnSignal(int) {
  char c = 's';
  ssize_t n = write(g_signal_pipe[1], &c, 1);
  (void)n;
}

// Reports the outcome of the mount to the waiting parent (or nothing in -f).
class Reporter {
 public:
  explicit Reporter(int fd) : fd_(fd) {}
  void Ok() { Send("ok\n"); }
  int Fail(std::string_view what, const Status& st) {
    std::string line = "meshfs: " + std::string(what) + ": " + st.message() + "\n";
    if (fd_ >= 0) {
      Send(line);
    } else {
      std::cerr << line;
    }
    return st.Is(Code::kInvalidArgument) ? kExitUsage : kExitFailure;
  }

 private:
  void Send(const std::string& s) {
    if (fd_ < 0) return;
    ssize_t n = write(fd_, s.data(), s.size());
    (void)n;
    close(fd_);
    fd_ = -1;
  }
  int fd_;
};

std::string EscapeFuseOpt(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

bool RunFusermount(const std::string& mountpoint, bool lazy) {
  if (geteuid() == 0) {
    pid_t pid = fork();
    if (pid == 0) {
      if (lazy) execlp("umount", "umount", "-l", mountpoint.c_str(), nullptr);
      else execlp("umount", "umount", mountpoint.c_str(), nullptr);
      _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return false;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO);
    if (lazy) execlp("fusermount3", "fusermount3", "-u", "-z", mountpoint.c_str(), nullptr);
    else execlp("fusermount3", "fusermount3", "-u", mountpoint.c_str(), nullptr);
    _exit(127);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) < 0) return false;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// Everything the running daemon holds.
class Daemon {
 public:
  fs::Volume* volume = nullptr;
  std::string mountpoint;
  net::PeerClient* client = nullptr;
  std::vector<net::PeerAddress> peers;
  net::ReplicatingStore* remote = nullptr;
  cache::CachingStore* cache = nullptr;
  uint64_t cache_max = 0;
  fs::Filesystem* fs = nullptr;
  fs::FuseServer* server = nullptr;

  // Pushes dirty data still in the kernel and in our buffers to the store.
  Status FlushAll() {
    int fd = open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      if (syncfs(fd) != 0) LogWarn(kLog, "syncfs " + mountpoint + ": " + std::strerror(errno));
      close(fd);
    }
    MESHFS_RETURN_IF_ERROR(fs->FlushAll(false));
    return fs->SyncMetadata();
  }

  json Pending() const {
    auto s = cache->Stats();
    json j = {{"pending_slices", s.pending_slices}, {"pending_bytes", s.pending_bytes}};
    if (!s.last_upload_error.empty()) j["last_error"] = s.last_upload_error;
    return j;
  }

  // Pings every configured peer (bounded); returns rows {addr, state, rtt_ms}.
  json PingPeers() const {
    std::vector<std::future<Result<net::HttpResponse>>> replies;
    for (const auto& p : peers) {
      net::HttpRequest req;
      req.peer = p;
      req.path = "/v1/ping";
      req.timeout_ms = 1500;
      replies.push_back(client->Send(std::move(req)));
    }
    json rows = json::array();
    for (size_t i = 0; i < peers.size(); ++i) {
      auto r = replies[i].get();
      json row = {{"addr", peers[i].ToString()}, {"id", nullptr}, {"configured", true}};
      if (r.ok() && r->status == 200) {
        row["state"] = "alive";
        row["rtt_ms"] = r->rtt_ms;
      } else {
        row["state"] = "unreachable";
        row["rtt_ms"] = nullptr;
        row["error"] = r.ok() ? "HTTP " + std::to_string(r->status) : r.status().message();
      }
      rows.push_back(row);
    }
    return rows;
  }

  // Free space of the peers for statfs, cached for a few seconds.
  std::optional<fs::StatFsInfo> PeerSpace() {
    std::lock_guard<std::mutex> lock(space_mu_);
    auto now = std::chrono::steady_clock::now();
    if (space_ && now - space_at_ < std::chrono::seconds(10)) return space_;
    std::vector<std::future<Result<net::HttpResponse>>> replies;
    for (const auto& p : peers) {
      net::HttpRequest req;
      req.peer = p;
      req.path = "/v1/info";
      req.timeout_ms = 1000;
      replies.push_back(client->Send(std::move(req)));
    }
    uint64_t cap = 0, used = 0;
    int answered = 0;
    for (auto& f : replies) {
      auto r = f.get();
      if (!r.ok() || r->status != 200) continue;
      auto j = json::parse(r->body, nullptr, false);
      if (!j.is_object() || !j.contains("capacity_bytes") || !j["capacity_bytes"].is_number()) {
        continue;
      }
      cap += j["capacity_bytes"].get<uint64_t>();
      if (j.contains("used_bytes") && j["used_bytes"].is_number()) {
        used += j["used_bytes"].get<uint64_t>();
      }
      ++answered;
    }
    space_at_ = now;
    if (answered == 0 || cap == 0) {
      space_.reset();
      return space_;
    }
    const uint64_t r = std::max<uint64_t>(1, std::min<uint64_t>(volume->config().replicas,
                                                                 peers.size()));
    fs::StatFsInfo s;
    s.total_bytes = cap / r;
    s.free_bytes = s.avail_bytes = (cap > used ? cap - used : 0) / r;
    space_ = s;
    return space_;
  }

  void Register(fs::ControlServer* control) {
    control->RegisterHandler("flush", [this](const json&, const fs::ControlServer::Progress&)
                                          -> Result<json> {
      MESHFS_RETURN_IF_ERROR(FlushAll());
      return json{{"dirty_bytes", fs->Stats().dirty_bytes}};
    });
    control->RegisterHandler("status", [this](const json&, const fs::ControlServer::Progress&)
                                           -> Result<json> {
      auto c = cache->Stats();
      auto f = fs->Stats();
      json rows = PingPeers();
      uint64_t reachable = 0;
      json list = json::array();
      for (const auto& r : rows) {
        if (r["state"] == "alive") ++reachable;
        list.push_back(r["addr"]);
      }
      return json{
          {"volume_id", volume->config().volume_id},
          {"mountpoint", mountpoint},
          {"pid", static_cast<int64_t>(getpid())},
          {"replicas", volume->config().replicas},
          {"offline", !peers.empty() && reachable == 0},
          {"dirty_bytes", f.dirty_bytes},
          {"open_files", f.open_files},
          {"uploads",
           {{"pending_slices", c.pending_slices},
            {"pending_bytes", c.pending_bytes},
            {"errors", c.upload_errors},
            {"last_error", c.last_upload_error}}},
          {"cache",
           {{"cached_bytes", c.cached_bytes},
            {"cached_slices", c.cached_slices},
            {"max_bytes", cache_max},
            {"hits", c.hits},
            {"misses", c.misses},
            {"damaged", c.corrupt_cached},
            {"memory_bytes", f.cache_bytes},
            {"memory_hits", f.cache_hits},
            {"memory_misses", f.cache_misses},
            {"pushed_to_page_cache_bytes", f.pushed_bytes}}},
          {"peers", {{"configured", peers.size()}, {"reachable", reachable}, {"list", list}}},
      };
    });
    control->RegisterHandler("peers", [this](const json&, const fs::ControlServer::Progress&)
                                          -> Result<json> {
      // Configured peers with this client's view (ping now), then every
      // other member the replicating store knows from gossip.
      json rows = PingPeers();
      std::map<std::string, size_t> at;
      for (size_t i = 0; i < rows.size(); ++i) at[rows[i]["addr"].get<std::string>()] = i;
      for (const net::PeerStatus& p : remote->Peers()) {
        json row;
        auto it = at.find(p.addr);
        if (it != at.end()) {
          row = rows[it->second];
        } else {
          row = {{"addr", p.addr}, {"configured", false}, {"state", p.state},
                 {"rtt_ms", p.rtt_ms >= 0 ? json(p.rtt_ms) : json(nullptr)}};
        }
        if (!p.id.empty()) row["id"] = p.id;
        if (row["state"] != "alive" || it == at.end()) {
          row["state"] = row["state"] == "unreachable" ? "unreachable" : p.state;
        }
        row["reputation"] = p.reputation;
        if (p.predicted_rtt_ms >= 0) row["predicted_rtt_ms"] = p.predicted_rtt_ms;
        row["capacity_bytes"] = p.capacity_bytes;
        row["free_bytes"] = p.free_bytes;
        if (it != at.end()) rows[it->second] = row;
        else rows.push_back(row);
      }
      return json{{"peers", rows}};
    });
    control->RegisterHandler("cache_clear", [this](const json&,
                                                   const fs::ControlServer::Progress&)
                                                -> Result<json> {
      uint64_t before = cache->Stats().cached_bytes;
      MESHFS_RETURN_IF_ERROR(cache->ClearUploaded());
      fs->ClearCache();
      auto s = cache->Stats();
      return json{{"freed_bytes", before > s.cached_bytes ? before - s.cached_bytes : 0},
                  {"cached_bytes", s.cached_bytes},
                  {"pending_slices", s.pending_slices}};
    });
    control->RegisterHandler("sync", [this](const json& req,
                                            const fs::ControlServer::Progress& progress)
                                         -> Result<json> {
      int64_t timeout = req.value("timeout_ms", int64_t{300'000});
      MESHFS_RETURN_IF_ERROR(FlushAll());
      Status st = WaitUploads(timeout, progress);
      if (!st.ok() && !st.Is(Code::kTimedOut)) return st;
      return Pending();
    });
    control->RegisterHandler("unmount", [this](const json& req,
                                               const fs::ControlServer::Progress& progress)
                                            -> Result<json> {
      int64_t timeout = req.value("timeout_ms", int64_t{60'000});
      bool force = req.value("force", false);
      Status flushed = FlushAll();
      if (!flushed.ok() && !force) return flushed;
      // --force: queued uploads stay on disk and resume at the next mount.
      Status st = force ? Status::OK() : WaitUploads(timeout, progress);
      if (!st.ok() && !st.Is(Code::kTimedOut)) return st;
      json reply = Pending();
      if (reply["pending_slices"].get<uint64_t>() > 0 && !force) {
        reply["unmounted"] = false;
        return reply;
      }
      if (!RunFusermount(mountpoint, false)) {
        if (!force) {
          return Status::Unavailable(mountpoint +
                                     " is busy (a process has a file or directory open there)");
        }
        server->Exit();  // the main thread detaches it lazily
      }
      reply["unmounted"] = true;
      return reply;
    });
  }

  Status WaitUploads(int64_t timeout_ms, const fs::ControlServer::Progress& progress) {
    return cache->WaitUploaded(timeout_ms, [&](const cache::CacheStats& s) {
      if (progress) {
        progress(json{{"pending_slices", s.pending_slices}, {"pending_bytes", s.pending_bytes}});
      }
    });
  }

 private:
  std::mutex space_mu_;
  std::optional<fs::StatFsInfo> space_;
  std::chrono::steady_clock::time_point space_at_;
};

// The part that runs in the daemon (the child, or the process itself in -f).
int Serve(const MountArgs& a, const fs::MountOptions& mo, fs::Volume& volume,
          const fs::VolumeKeys& keys, const std::string& mountpoint, int lock_fd,
          Reporter& report) {
  (void)lock_fd;
  // Slices are 1 MiB buffers made and freed on many threads; with one malloc
  // arena per thread, freed buffers linger in each. Two arenas keep peak RSS
  // ~15% lower in a large write at no measurable CPU cost (a fixed mmap
  // threshold would cut it more but costs ~25% CPU in page faults).
  mallopt(M_ARENA_MAX, 2);
  auto peers = net::PeerAddress::ParseList([&] {
    std::string s;
    for (const auto& p : volume.config().peers) s += (s.empty() ? "" : ",") + p;
    return s;
  }());
  if (!peers.ok()) return report.Fail("mount", peers.status().WithContext("volume peers"));

  net::PeerClient client;
  net::ReplicatingOptions ro;
  ro.seeds = *peers;
  ro.replicas = volume.config().replicas;
  ro.owner = volume.config().volume_id;
  ro.signing_key.assign(reinterpret_cast<const char*>(keys.signing_secret.data()),
                        keys.signing_secret.size());
  ro.holders_db = volume.dir() / "holders.db";
  auto remote = net::ReplicatingStore::Open(ro, &client);
  if (!remote.ok()) return report.Fail("mount", remote.status().WithContext("peers"));
  cache::CacheOptions co;
  co.db_path = volume.cache_db_path();
  co.max_bytes = mo.cache_size;
  co.durability = mo.durability_network ? cache::Durability::kNetwork : cache::Durability::kLocal;
  auto cache = cache::CachingStore::Open(co, remote->get());
  if (!cache.ok()) return report.Fail("mount", cache.status().WithContext("opening the cache"));

  fs::SliceCodec codec(keys.slice, volume.config().slice_size);
  Daemon d;
  d.volume = &volume;
  d.mountpoint = mountpoint;
  d.client = &client;
  d.peers = *peers;
  d.remote = remote->get();
  d.cache = cache->get();
  d.cache_max = mo.cache_size;

  fs::Filesystem::Options fo;
  fo.metadata_path = volume.metadata_db_path();
  fo.slice_size = volume.config().slice_size;
  fo.volume_id = volume.config().volume_id;
  fo.codec = &codec;
  fo.store = cache->get();
  fo.read_only = mo.read_only;
  fo.cache_bytes = mo.memory_cache;
  fo.dirty_max = mo.dirty_max;
  fo.statfs = [&d] { return d.PeerSpace(); };
  fo.root_uid = getuid();
  fo.root_gid = getgid();
  auto filesystem = fs::Filesystem::Open(fo);
  if (!filesystem.ok()) {
    return report.Fail("mount", filesystem.status().WithContext("opening the metadata"));
  }
  d.fs = filesystem->get();

  fs::FuseSettings fset;
  fset.attr_timeout_s = mo.attr_timeout_s;
  fset.entry_timeout_s = mo.entry_timeout_s;
  fset.writeback_cache = mo.writeback_cache;
  fset.readahead_kb = static_cast<unsigned>(mo.readahead >> 10);
  fset.read_only = mo.read_only;
  std::vector<std::string> fuse_opts = mo.fuse_options;
  fuse_opts.push_back("fsname=" + EscapeFuseOpt(volume.dir().string()));
  fuse_opts.push_back("subtype=meshfs");
  auto server = fs::FuseServer::Create(d.fs, fset, fuse_opts);
  if (!server.ok()) return report.Fail("mount", server.status());
  d.server = server->get();

  auto control = fs::ControlServer::Start(volume.control_socket_path());
  if (!control.ok()) return report.Fail("mount", control.status().WithContext("control socket"));
  d.Register(control->get());

  Status st = (*server)->Mount(mountpoint);
  if (!st.ok()) {
    (*control)->Stop();
    return report.Fail("mount", st);
  }

  // Where scripts and `meshfs status` find the daemon.
  const auto info_path = volume.dir() / "mount.json";
  const auto pid_path = volume.dir() / "mount.pid";
  {
    std::ofstream(info_path) << json{{"mountpoint", mountpoint},
                                     {"pid", static_cast<int64_t>(getpid())}}
                                    .dump()
                             << "\n";
    std::ofstream(pid_path) << getpid() << "\n";
  }
  LogInfo(kLog, "mounted " + volume.dir().string() + " on " + mountpoint);
  report.Ok();
  if (!a.foreground) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, STDIN_FILENO);
      dup2(devnull, STDOUT_FILENO);
      close(devnull);
    }
    int logfd = open((volume.dir() / "mount.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                     0600);
    if (logfd >= 0) {
      dup2(logfd, STDERR_FILENO);
      close(logfd);
    }
  }

  // SIGTERM/SIGINT/SIGHUP: flush what the kernel and we hold, then unmount.
  std::thread signal_thread([&] {
    char c = 'q';
    while (read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    if (c == 'q') return;  // normal exit
    LogInfo(kLog, "signal received: flushing and unmounting " + mountpoint);
    Status fs_st = d.FlushAll();
    if (!fs_st.ok()) LogWarn(kLog, "flush: " + fs_st.ToString());
    (void)d.cache->WaitUploaded(kSignalUploadWaitMs);
    if (!RunFusermount(mountpoint, false)) d.server->Exit();
  });

  st = (*server)->Loop();
  if (!st.ok()) LogWarn(kLog, st.ToString());

  // The kernel has let go (or we were told to stop): write back, wait a little.
  // Not FlushAll(true): that would wait for the network when peers are gone;
  // the cache's queue is durable and resumes at the next mount.
  Status flush = d.fs->FlushAll(false);
  if (flush.ok()) flush = d.fs->SyncMetadata();
  if (!flush.ok()) LogWarn(kLog, "final flush: " + flush.ToString());
  (*control)->Stop();
  (*server)->Unmount();
  Status up = d.cache->WaitUploaded(kExitUploadWaitMs);
  if (!up.ok()) {
    auto s = d.cache->Stats();
    LogWarn(kLog, std::to_string(s.pending_slices) +
                      " slice(s) not yet on their peers stay queued and upload at the next mount");
  }
  {
    char q = 'q';
    ssize_t n = write(g_signal_pipe[1], &q, 1);
    (void)n;
  }
  signal_thread.join();
  server->reset();
  filesystem->reset();
  cache->reset();
  std::error_code ec;
  std::filesystem::remove(info_path, ec);
  std::filesystem::remove(pid_path, ec);
  LogInfo(kLog, "unmounted " + mountpoint);
  return kExitOk;
}

int RunMount() {
  const MountArgs& a = Args();
  auto mo = fs::ParseMountOptions(a.options);
  if (!mo.ok()) return Fail("mount", mo.status());

  auto volume = fs::Volume::Open(fs::ResolveVolumeDir(a.volume));
  if (!volume.ok()) return Fail("mount", volume.status());
  std::error_code ec;
  std::filesystem::path mp = std::filesystem::absolute(a.mountpoint, ec);
  if (ec || !std::filesystem::is_directory(mp, ec)) {
    return Fail("mount", Status::NotFound("mountpoint " + a.mountpoint +
                                          " is not an existing directory"));
  }
  mp = std::filesystem::canonical(mp, ec);
  const std::string mountpoint = mp.string();
  const std::filesystem::path vol_abs = std::filesystem::canonical(volume->dir(), ec);
  fs::Volume vol = *volume;
  if (!ec) {
    auto reopened = fs::Volume::Open(vol_abs);
    if (reopened.ok()) vol = *reopened;
  }

  // One daemon per volume: an exclusive lock held for the daemon's lifetime.
  const auto lock_path = vol.dir() / "mount.lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return Fail("mount", Status::FromErrno("cannot open " + lock_path.string(), errno));
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    std::string where;
    std::ifstream info(vol.dir() / "mount.json");
    auto j = json::parse(info, nullptr, false);
    if (j.is_object() && j.contains("mountpoint")) {
      where = " on " + j["mountpoint"].get<std::string>();
    }
    return Fail("mount", Status::AlreadyExists("volume " + vol.dir().string() +
                                               " is already mounted" + where +
                                               " (one mount per volume; 'meshfs umount' it first)"));
  }

  auto keys = UnlockVolume(vol, a.passphrase_file);
  if (!keys.ok()) return Fail("mount", keys.status());

  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    return Fail("mount", Status::FromErrno("pipe", errno));
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (a.foreground) {
    Reporter report(-1);
    return Serve(a, *mo, vol, *keys, mountpoint, lock_fd, report);
  }
  // Daemonize before any thread exists: the child reports through a pipe.
  int report_pipe[2];
  if (pipe2(report_pipe, O_CLOEXEC) != 0) return Fail("mount", Status::FromErrno("pipe", errno));
  pid_t pid = fork();
  if (pid < 0) return Fail("mount", Status::FromErrno("fork", errno));
  if (pid > 0) {
    close(report_pipe[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = read(report_pipe[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) msg.append(buf, static_cast<size_t>(n));
    }
    if (msg == "ok\n") return kExitOk;
    if (msg.empty()) msg = "meshfs: mount: the mount daemon exited before mounting\n";
    std::cerr << msg;
    return kExitFailure;
  }
  close(report_pipe[0]);
  setsid();
  Reporter report(report_pipe[1]);
  return Serve(a, *mo, vol, *keys, mountpoint, lock_fd, report);
}

}  // namespace

void RegisterMountCommands(CLI::App& app, CommandTable& table) {
  auto* mount = app.add_subcommand("mount", "Mount a volume");
  MountArgs& a = Args();
  mount->add_option("VOLUME", a.volume, "Volume directory or name")->required();
  mount->add_option("MOUNTPOINT", a.mountpoint, "An existing directory")->required();
  mount->add_flag("-f,--foreground", a.foreground, "Stay in the foreground (log to stderr)");
  mount->add_option("-o", a.options, "Mount options, OPT[,OPT...] (see below)")->delimiter(',');
  mount->add_option("--passphrase-file", a.passphrase_file,
                    "Read the volume passphrase from this file (else MESHFS_PASSPHRASE or a "
                    "prompt)");
  mount->footer(fs::MountOptionsHelp() + R"(
Durability: whatever fsync(2) acknowledged survives a crash of this client
(kill -9, power loss) and, with durability=network, the loss of the local
disk once at least one peer holds it; 'meshfs sync' and unmount wait until
every slice is on all its replicas. Writes not yet fsync'ed may be lost in a
crash. See docs/mount.md.)");
  table.Add(mount, [] { return RunMount(); });
}

}  // namespace meshfs::cli
