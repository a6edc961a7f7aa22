// meshfs sync, status, peers, cache clear, umount: the commands that talk to
// a mounted volume's daemon over VOLUME/control.sock (meshfs/fs/control.h),
// and read what they can from the volume directory when it is not mounted.
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "command.h"
#include "control_client.h"
#include "meshfs/cache/caching_store.h"
#include "meshfs/fs/volume.h"
#include "meshfs/net/members.h"
#include "meshfs/net/peer_client.h"

namespace meshfs::cli {

namespace {

using nlohmann::json;

constexpr int kDefaultSyncTimeoutS = 300;
constexpr int kDefaultUmountTimeoutS = 60;
constexpr int kForceGraceS = 5;
// Extra time the client grants the daemon beyond the operation's own timeout.
constexpr int kReplyGraceMs = 15'000;

// ---- small helpers -------------------------------------------------------

uint64_t U64(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) return it->get<int64_t>() < 0 ? 0 : it->get<int64_t>();
  double d = it->get<double>();
  return d < 0 ? 0 : static_cast<uint64_t>(d);
}

std::string Str(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& Sub(const json& obj, const char* key) {
  static const json kEmpty = json::object();
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : kEmpty;
}

std::string Slices(uint64_t n) { return std::to_string(n) + (n == 1 ? " slice" : " slices"); }

std::string PendingText(const json& j) {
  return Slices(U64(j, "pending_slices")) + " (" + HumanBytes(U64(j, "pending_bytes")) + ")";
}

// A progress line on stderr, redrawn in place, only when stderr is a terminal.
class ProgressLine {
 public:
  ProgressLine() : tty_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { Done(); }
  void Show(const std::string& text) {
    if (!tty_) return;
    std::string line = "\r" + text;
    if (text.size() < width_) line += std::string(width_ - text.size(), ' ');
    width_ = text.size();
    std::cerr << line << std::flush;
    shown_ = true;
  }
  void Done() {
    if (shown_) std::cerr << "\n" << std::flush;
    shown_ = false;
    width_ = 0;
  }

 private:
  bool tty_;
  bool shown_ = false;
  size_t width_ = 0;
};

// Counts of the cache database of a volume that is not mounted.
struct OfflineCache {
  bool present = false;
  uint64_t pending_slices = 0, pending_bytes = 0;
  uint64_t cached_slices = 0, cached_bytes = 0;  // all rows, pending included
  std::string error;
};

OfflineCache ReadCacheDb(const std::filesystem::path& db_path) {
  OfflineCache out;
  std::error_code ec;
  if (!std::filesystem::exists(db_path, ec)) return out;
  sqlite3* db = nullptr;
  const std::string uri = "file:" + db_path.native() + "?mode=ro";
  int rc = sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    rc = sqlite3_prepare_v2(
        db, "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM blobs GROUP BY state", -1, &st,
        nullptr);
    if (rc == SQLITE_OK) {
      out.present = true;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int state = sqlite3_column_int(st, 0);
        const auto n = static_cast<uint64_t>(sqlite3_column_int64(st, 1));
        const auto bytes = static_cast<uint64_t>(sqlite3_column_int64(st, 2));
        out.cached_slices += n;
        out.cached_bytes += bytes;
        if (state == 0) {
          out.pending_slices += n;
          out.pending_bytes += bytes;
        }
      }
      if (rc != SQLITE_DONE) out.error = sqlite3_errmsg(db);
    }
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK && rc != SQLITE_DONE && out.error.empty()) {
    out.error = db ? sqlite3_errmsg(db) : "cannot open";
  }
  if (!out.error.empty()) {
    out.present = false;
    out.error = "cannot read " + db_path.native() + ": " + out.error;
  }
  sqlite3_close(db);
  return out;
}

// ---- peers ----------------------------------------------------------------

// Asks every configured peer for its membership table (GET /v1/members) and
// merges them: what `meshfs peers` shows when the volume is not mounted.
json QueryPeersDirectly(const std::vector<std::string>& configured) {
  net::PeerClient client(net::PeerClient::Options{.connect_timeout_ms = 2000,
                                                  .default_timeout_ms = 4000,
                                                  .max_connections_per_host = 2});
  struct Pending {
    std::string addr;
    std::optional<net::PeerAddress> parsed;
    std::future<Result<net::HttpResponse>> reply;
  };
  std::vector<Pending> pending;
  for (const std::string& a : configured) {
    Pending p{a, std::nullopt, {}};
    auto parsed = net::PeerAddress::Parse(a);
    if (parsed.ok()) {
      p.parsed = *parsed;
      net::HttpRequest req;
      req.peer = *parsed;
      req.path = "/v1/members";
      req.timeout_ms = 4000;
      p.reply = client.Send(std::move(req));
    }
    pending.push_back(std::move(p));
  }
  std::map<std::string, json> by_addr;  // merged membership, keyed by address
  std::map<std::string, json> configured_rows;
  for (Pending& p : pending) {
    json row = {{"addr", p.addr}, {"id", nullptr}, {"state", "unreachable"}, {"rtt_ms", nullptr},
                {"configured", true}};
    if (!p.parsed) {
      row["error"] = "not a HOST:PORT address";
    } else {
      Result<net::HttpResponse> r = p.reply.get();
      if (!r.ok()) {
        row["error"] = r.status().message();
      } else if (r->status != 200) {
        row["error"] = "GET /v1/members answered HTTP " + std::to_string(r->status);
      } else {
        row["rtt_ms"] = r->rtt_ms;
        auto members = net::ParseMembers(r->body);
        if (!members.ok()) {
          row["state"] = "alive";
          row["error"] = "bad membership table: " + members.status().message();
        } else {
          for (const net::Member& m : *members) {
            json& merged = by_addr[m.addr];
            const std::string state(net::StateName(m.state));
            // The most hopeful view wins: a peer alive to anyone is alive.
            if (merged.is_null() || (merged["state"] != "alive" && state == "alive")) {
              merged = {{"addr", m.addr}, {"id", m.id}, {"state", state}, {"rtt_ms", nullptr},
                        {"configured", false}};
            }
          }
          row["state"] = "alive";  // it answered us
        }
      }
    }
    configured_rows[p.addr] = row;
  }
  json out = json::array();
  for (auto& [addr, row] : configured_rows) {
    if (auto it = by_addr.find(addr); it != by_addr.end()) {
      if (row["id"].is_null()) row["id"] = it->second["id"];
      if (row["state"] == "unreachable" && !row.contains("error")) row["state"] = it->second["state"];
      by_addr.erase(it);
    }
    out.push_back(row);
  }
  for (auto& [addr, row] : by_addr) out.push_back(row);
  return out;
}

void PrintPeersTable(const json& peers) {
  size_t w_addr = 4, w_id = 2, w_state = 5;
  for (const json& p : peers) {
    w_addr = std::max(w_addr, Str(p, "addr").size());
    w_id = std::max(w_id, p["id"].is_string() ? p["id"].get<std::string>().size() : 1);
    w_state = std::max(w_state, Str(p, "state").size());
  }
  auto row = [&](const std::string& a, const std::string& i, const std::string& s,
                 const std::string& r, const std::string& note) {
    std::cout << std::left << std::setw(static_cast<int>(w_addr)) << a << "  "
              << std::setw(static_cast<int>(w_id)) << i << "  "
              << std::setw(static_cast<int>(w_state)) << s << "  ";
    if (note.empty()) {
      std::cout << r;
    } else {
      std::cout << std::setw(8) << r << "  " << note;
    }
    std::cout << "\n";
  };
  row("ADDR", "ID", "STATE", "RTT", "");
  for (const json& p : peers) {
    std::string rtt = "-";
    if (auto it = p.find("rtt_ms"); it != p.end() && it->is_number()) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.1f ms", it->get<double>());
      rtt = buf;
    }
    row(Str(p, "addr"), p.contains("id") && p["id"].is_string() ? p["id"].get<std::string>() : "-",
        Str(p, "state"), rtt, Str(p, "error"));
  }
}

// ---- status ---------------------------------------------------------------

json OfflineStatus(const VolumeTarget& t, const fs::VolumeConfig* config, const std::string& why) {
  OfflineCache c = ReadCacheDb(t.volume_dir / "cache.db");
  json j = {
      {"volume", t.volume_dir.native()},
      {"mounted", false},
      {"mountpoint", t.kernel_mounted ? json(t.mountpoint.native()) : json(nullptr)},
      {"pid", nullptr},
      {"daemon", why},
      {"volume_id", config ? json(config->volume_id) : json(nullptr)},
      {"replicas", config ? json(config->replicas) : json(nullptr)},
      {"offline", nullptr},
      {"uploads",
       {{"pending_slices", c.pending_slices},
        {"pending_bytes", c.pending_bytes},
        {"errors", nullptr},
        {"last_error", nullptr}}},
      {"cache",
       {{"cached_bytes", c.cached_bytes},
        {"cached_slices", c.cached_slices},
        {"max_bytes", nullptr},
        {"hits", nullptr},
        {"misses", nullptr},
        {"hit_rate", nullptr}}},
      {"peers",
       {{"configured", config ? json(config->peers.size()) : json(nullptr)},
        {"reachable", nullptr},
        {"list", config ? json(config->peers) : json::array()}}},
  };
  if (!c.error.empty()) j["cache"]["error"] = c.error;
  return j;
}

// Normalises the daemon's status reply to the documented --json keys.
json OnlineStatus(const VolumeTarget& t, const json& r) {
  const json& up = Sub(r, "uploads");
  const json& cache = Sub(r, "cache");
  const json& peers = Sub(r, "peers");
  const uint64_t hits = U64(cache, "hits"), misses = U64(cache, "misses");
  json j = r;
  j.erase("ok");
  j.erase("v");
  j["volume"] = t.volume_dir.native();
  j["mounted"] = true;
  if (!r.contains("mountpoint")) j["mountpoint"] = t.mountpoint.native();
  j["daemon"] = "running";
  j["uploads"]["pending_slices"] = U64(up, "pending_slices");
  j["uploads"]["pending_bytes"] = U64(up, "pending_bytes");
  j["cache"]["cached_bytes"] = U64(cache, "cached_bytes");
  j["cache"]["cached_slices"] = U64(cache, "cached_slices");
  j["cache"]["hits"] = hits;
  j["cache"]["misses"] = misses;
  j["cache"]["hit_rate"] = hits + misses == 0 ? json(nullptr)
                                              : json(static_cast<double>(hits) /
                                                     static_cast<double>(hits + misses));
  j["peers"]["configured"] = U64(peers, "configured");
  j["peers"]["reachable"] = U64(peers, "reachable");
  if (!r.contains("offline")) j["offline"] = U64(peers, "reachable") == 0;
  return j;
}

void PrintStatus(const json& j) {
  auto line = [](const std::string& k, const std::string& v) {
    std::cout << std::left << std::setw(12) << (k + ":") << v << "\n";
  };
  line("volume", Str(j, "volume"));
  const bool mounted = j.value("mounted", false);
  if (mounted) {
    std::string m = "mounted on " + Str(j, "mountpoint");
    if (j.contains("pid") && j["pid"].is_number_integer()) {
      m += " (pid " + std::to_string(j["pid"].get<int64_t>()) + ")";
    }
    line("state", m);
  } else {
    std::string m = "not mounted";
    if (j["mountpoint"].is_string()) {
      m += " (stale FUSE mount at " + Str(j, "mountpoint") + ": run 'fusermount3 -u " +
           Str(j, "mountpoint") + "')";
    }
    line("state", m);
  }
  const json& peers = Sub(j, "peers");
  if (mounted) {
    line("peers", std::to_string(U64(peers, "reachable")) + " of " +
                      std::to_string(U64(peers, "configured")) + " reachable" +
                      (j.value("offline", false) ? " (OFFLINE: writes queue locally)" : ""));
  } else if (peers.contains("list") && peers["list"].is_array()) {
    std::string list;
    for (const auto& p : peers["list"]) list += (list.empty() ? "" : ", ") + p.get<std::string>();
    line("peers", list.empty() ? "none configured" : list);
  }
  if (j["replicas"].is_number()) line("replicas", std::to_string(j["replicas"].get<int>()));
  const json& up = Sub(j, "uploads");
  std::string uploads = PendingText(up) + " pending";
  if (!mounted && U64(up, "pending_slices") > 0) uploads += "; they upload at the next mount";
  line("uploads", uploads);
  if (!Str(up, "last_error").empty()) line("last error", Str(up, "last_error"));
  const json& cache = Sub(j, "cache");
  std::string c = HumanBytes(U64(cache, "cached_bytes"));
  if (cache.contains("max_bytes") && cache["max_bytes"].is_number()) {
    c += " of " + HumanBytes(U64(cache, "max_bytes"));
  }
  c += ", " + Slices(U64(cache, "cached_slices"));
  if (cache.contains("hit_rate") && cache["hit_rate"].is_number()) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), ", hit rate %.1f%% (%llu hits, %llu misses)",
                  cache["hit_rate"].get<double>() * 100,
                  static_cast<unsigned long long>(U64(cache, "hits")),
                  static_cast<unsigned long long>(U64(cache, "misses")));
    c += buf;
  }
  line("cache", c);
  if (U64(cache, "damaged") > 0) {
    line("damaged", Slices(U64(cache, "damaged")) +
                        " in the cache failed their check since mount (fetched again from "
                        "the peers where they could be; the log names each)");
  }
  if (!Str(cache, "error").empty()) line("cache error", Str(cache, "error"));
}

// ---- the commands ---------------------------------------------------------

struct Options {
  std::string target;
  bool json = false;
  int timeout_s = -1;
  bool force = false;
};

Options& Opts() {
  static Options o;
  return o;
}

int RunStatus() {
  const Options& o = Opts();
  auto t = ResolveTarget(o.target);
  if (!t.ok()) return Fail("status", t.status());
  json j;
  auto client = ConnectDaemon(*t);
  if (client.ok()) {
    auto r = (*client)->Call({{"op", "status"}}, {}, 10'000);
    if (!r.ok()) return Fail("status", r.status().WithContext("mount daemon"));
    j = OnlineStatus(*t, *r);
  } else {
    auto vol = fs::Volume::Open(t->volume_dir);
    j = OfflineStatus(*t, vol.ok() ? &vol->config() : nullptr,
                      client.status().Is(Code::kNotFound) ? "not running" : "not answering");
    if (!vol.ok()) j["config_error"] = vol.status().message();
  }
  if (o.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    PrintStatus(j);
    if (j.contains("config_error")) std::cout << "config:     " << Str(j, "config_error") << "\n";
  }
  return kExitOk;
}

int RunPeers() {
  const Options& o = Opts();
  auto t = ResolveTarget(o.target);
  if (!t.ok()) return Fail("peers", t.status());
  json peers;
  bool mounted = false;
  auto client = ConnectDaemon(*t);
  if (client.ok()) {
    auto r = (*client)->Call({{"op", "peers"}}, {}, 15'000);
    if (!r.ok()) return Fail("peers", r.status().WithContext("mount daemon"));
    peers = r->contains("peers") && (*r)["peers"].is_array() ? (*r)["peers"] : json::array();
    mounted = true;
  } else {
    auto vol = fs::Volume::Open(t->volume_dir);
    if (!vol.ok()) return Fail("peers", vol.status());
    peers = QueryPeersDirectly(vol->config().peers);
  }
  if (o.json) {
    std::cout << json{{"volume", t->volume_dir.native()}, {"mounted", mounted}, {"peers", peers}}
                     .dump(2)
              << "\n";
  } else {
    PrintPeersTable(peers);
  }
  return kExitOk;
}

int RunSync() {
  const Options& o = Opts();
  auto t = ResolveTarget(o.target);
  if (!t.ok()) return Fail("sync", t.status());
  auto client = ConnectDaemon(*t);
  if (!client.ok()) {
    OfflineCache c = ReadCacheDb(t->volume_dir / "cache.db");
    if (c.pending_slices == 0 && c.error.empty()) {
      std::cout << "not mounted; nothing is queued for upload\n";
      return kExitOk;
    }
    std::cerr << "meshfs: sync: " << t->volume_dir.native() << " is not mounted ("
              << client.status().message() << "); "
              << (c.error.empty() ? Slices(c.pending_slices) + " (" + HumanBytes(c.pending_bytes) +
                                        ") stay queued on disk and upload at the next mount"
                                  : c.error)
              << "\n";
    return kExitFailure;
  }
  const int timeout_s = o.timeout_s >= 0 ? o.timeout_s : kDefaultSyncTimeoutS;
  ProgressLine progress;
  auto r = (*client)->Call(
      {{"op", "sync"}, {"timeout_ms", int64_t{timeout_s} * 1000}},
      [&](const json& p) { progress.Show("sync: " + PendingText(p) + " pending"); },
      timeout_s * 1000 + kReplyGraceMs);
  progress.Done();
  if (!r.ok()) return Fail("sync", r.status());
  const uint64_t pending = U64(*r, "pending_slices");
  const bool published = r->value("published", pending == 0);
  if (pending == 0 && published) {
    std::cout << "synced: every slice is on its peers and the snapshot is published\n";
    return kExitOk;
  }
  std::string msg = "meshfs: sync: ";
  if (pending > 0) {
    msg += PendingText(*r) + " still pending after " + std::to_string(timeout_s) + " s";
  } else {
    msg += "the snapshot is not published yet";
  }
  if (!Str(*r, "last_error").empty()) msg += " (" + Str(*r, "last_error") + ")";
  msg += "; they stay queued and keep uploading: run 'meshfs sync' again or see 'meshfs status'";
  std::cerr << msg << "\n";
  return kExitFailure;
}

int RunCacheClear() {
  const Options& o = Opts();
  auto t = ResolveTarget(o.target);
  if (!t.ok()) return Fail("cache clear", t.status());
  auto client = ConnectDaemon(*t);
  if (client.ok()) {
    auto r = (*client)->Call({{"op", "cache_clear"}}, {}, 60'000);
    if (!r.ok()) return Fail("cache clear", r.status().WithContext("mount daemon"));
    std::cout << "freed " << HumanBytes(U64(*r, "freed_bytes")) << "; cache now holds "
              << HumanBytes(U64(*r, "cached_bytes"));
    if (U64(*r, "pending_slices") > 0) {
      std::cout << " (" << Slices(U64(*r, "pending_slices"))
                << " not yet uploaded are kept)";
    }
    std::cout << "\n";
    return kExitOk;
  }
  const std::filesystem::path db = t->volume_dir / "cache.db";
  OfflineCache before = ReadCacheDb(db);
  if (!before.present) {
    if (!before.error.empty()) return Fail("cache clear", Status::IOError(before.error));
    std::cout << "the cache is empty (no cache database yet)\n";
    return kExitOk;
  }
  Status s = cache::ClearUploadedOffline(db);
  if (!s.ok()) return Fail("cache clear", s);
  OfflineCache after = ReadCacheDb(db);
  std::cout << "freed "
            << HumanBytes(before.cached_bytes > after.cached_bytes
                              ? before.cached_bytes - after.cached_bytes
                              : 0)
            << "; cache now holds " << HumanBytes(after.cached_bytes);
  if (after.pending_slices > 0) {
    std::cout << " (" << Slices(after.pending_slices) << " not yet uploaded are kept)";
  }
  std::cout << "\n";
  return kExitOk;
}

// Runs `fusermount3 -u [-z] MOUNTPOINT`; true on success.
bool FuserUnmount(const std::filesystem::path& mountpoint, bool lazy) {
  pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    if (lazy) {
      ::execlp("fusermount3", "fusermount3", "-u", "-z", "--", mountpoint.c_str(), nullptr);
    } else {
      ::execlp("fusermount3", "fusermount3", "-u", "--", mountpoint.c_str(), nullptr);
    }
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// True while `pid` exists and is not a zombie (a daemon started with -f by
// a parent that has not reaped it yet is done once it is a zombie).
bool ProcessRunning(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return false;
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  const char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

bool StillMounted(const std::filesystem::path& mountpoint) {
  for (const MountEntry& e : ReadMountTable()) {
    if (e.mountpoint == mountpoint.native()) return true;
  }
  return false;
}

// Waits (bounded) until the kernel no longer lists `mountpoint`.
bool WaitUnmounted(const std::filesystem::path& mountpoint, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (StillMounted(mountpoint)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

int RunUmount() {
  const Options& o = Opts();
  auto t = ResolveTarget(o.target);
  if (!t.ok()) return Fail("umount", t.status());
  const std::string mp = t->mountpoint.empty() ? o.target : t->mountpoint.native();
  auto client = ConnectDaemon(*t);
  if (!client.ok()) {
    if (!t->kernel_mounted) {
      std::cerr << "meshfs: umount: " << o.target << " is not mounted\n";
      return kExitFailure;
    }
    // The daemon is gone or does not answer: only the kernel mount is left.
    std::cerr << "meshfs: umount: no daemon answers for " << mp << " ("
              << client.status().message() << "); unmounting with fusermount3"
              << (o.force ? " -z" : "") << "\n";
    if (!FuserUnmount(t->mountpoint, o.force)) {
      std::cerr << "meshfs: umount: fusermount3 -u " << mp
                << " failed; if the mount is busy, close the programs using it or run "
                   "'meshfs umount --force "
                << mp << "'\n";
      return kExitFailure;
    }
    std::cout << "unmounted " << mp << "\n";
    return kExitOk;
  }

  // --force without --timeout: a short grace for uploads about to finish.
  const int timeout_s =
      o.timeout_s >= 0 ? o.timeout_s : (o.force ? kForceGraceS : kDefaultUmountTimeoutS);
  ProgressLine progress;
  auto r = (*client)->Call(
      {{"op", "unmount"}, {"timeout_ms", int64_t{timeout_s} * 1000}, {"force", o.force}},
      [&](const json& p) { progress.Show("umount: waiting for " + PendingText(p) + " to upload"); },
      timeout_s * 1000 + kReplyGraceMs);
  progress.Done();
  if (!r.ok()) {
    if (r.status().Is(Code::kTimedOut) && o.force && t->kernel_mounted) {
      std::cerr << "meshfs: umount: the daemon did not answer; forcing with fusermount3 -u -z\n";
      return FuserUnmount(t->mountpoint, true) ? kExitOk : kExitFailure;
    }
    std::cerr << "meshfs: umount: " << r.status().message()
              << "; to unmount anyway (queued uploads stay on disk): meshfs umount --force " << mp
              << "\n";
    return kExitFailure;
  }
  const uint64_t pending = U64(*r, "pending_slices");
  const std::string last_error = Str(*r, "last_error");
  if (!r->value("unmounted", false)) {
    std::cerr << "meshfs: umount: " << PendingText(*r) << " not yet on their peers after "
              << timeout_s << " s" << (last_error.empty() ? "" : " (" + last_error + ")")
              << ". Still mounted. They stay queued on disk and resume uploading at the next "
                 "mount; to unmount now anyway: meshfs umount --force "
              << mp << "\n";
    return kExitFailure;
  }
  if (!t->mountpoint.empty() && !WaitUnmounted(t->mountpoint, 3'000)) {
    // The daemon has flushed and stopped serving; detach the kernel mount
    // ourselves (this also ends the daemon's session loop).
    if (!FuserUnmount(t->mountpoint, o.force) && !WaitUnmounted(t->mountpoint, 7'000)) {
      std::cerr << "meshfs: umount: everything is saved but " << mp
                << " is still mounted (busy: close the programs using it), or run "
                   "'fusermount3 -u -z "
                << mp << "'\n";
      return kExitFailure;
    }
  }
  // Let the daemon finish closing its databases, so that a mount right
  // after this command finds the volume free (bounded; never fatal).
  if (t->pid > 0 && t->pid != ::getpid()) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ProcessRunning(t->pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (pending > 0) {
    std::cout << "unmounted " << mp << "; " << PendingText(*r)
              << " not yet uploaded stay queued on disk and resume at the next mount\n";
  } else {
    std::cout << "unmounted " << mp << "\n";
  }
  return kExitOk;
}

}  // namespace

void RegisterVolumeCommands(CLI::App& app, CommandTable& table) {
  Options& o = Opts();
  auto* sync = app.add_subcommand(
      "sync", "Flush, wait until every slice is on R peers and publish the snapshot");
  sync->add_option("VOLUME|MOUNTPOINT", o.target, "Volume directory or name, or its mountpoint")
      ->required();
  sync->add_option("--timeout", o.timeout_s, "Give up after SECONDS (default 300); exit 1")
      ->check(CLI::NonNegativeNumber);
  table.Add(sync, RunSync);

  auto* status = app.add_subcommand("status", "Show uploads, cache and peers of a volume");
  status->add_option("VOLUME|MOUNTPOINT", o.target, "Volume directory or name, or its mountpoint")
      ->required();
  status->add_flag("--json", o.json, "Machine-readable output (keys in meshfs(1))");
  table.Add(status, RunStatus);

  auto* peers = app.add_subcommand("peers", "List the peers a volume sees");
  peers->add_option("VOLUME|MOUNTPOINT", o.target, "Volume directory or name, or its mountpoint")
      ->required();
  peers->add_flag("--json", o.json, "Machine-readable output (keys in meshfs(1))");
  table.Add(peers, RunPeers);

  auto* cache = app.add_subcommand("cache", "Manage the local block cache");
  cache->require_subcommand(1);
  auto* clear = cache->add_subcommand("clear", "Drop cached slices that are safely on peers");
  clear->add_option("VOLUME", o.target, "Volume directory or name (or its mountpoint)")
      ->required();
  table.Add(clear, RunCacheClear);

  auto* umount = app.add_subcommand(
      "umount", "Flush, wait for uploads (with a progress line), then unmount");
  umount->add_option("MOUNTPOINT", o.target, "The mountpoint (or the volume)")->required();
  umount->add_option("--timeout", o.timeout_s,
                     "Wait at most SECONDS for uploads (default 60, 5 with --force); then exit 1, "
                     "still mounted")
      ->check(CLI::NonNegativeNumber);
  umount->add_flag("--force", o.force,
                   "Unmount now even if uploads are pending; they stay queued on disk and "
                   "resume at the next mount");
  table.Add(umount, RunUmount);
}

}  // namespace meshfs::cli
