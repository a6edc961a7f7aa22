#include "meshfs/net/replicating_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "meshfs/core/log.h"
#include "meshfs/core/signed_request.h"
#include "meshfs/net/members.h"
#include "meshfs/net/placement.h"
#include "meshfs/core/thread_name.h"

namespace meshfs::net {
namespace {

constexpr const char* kComponent = "replicate";
constexpr int kMembersTimeoutMs = 3000;
constexpr int kMinHedgeMs = 50;

using Steady = std::chrono::steady_clock;

std::string Short(const SliceId& id) { return id.ToHex().substr(0, 12); }

// "HOST:PORT: reason" -> "HOST:PORT".
std::string FailedPeer(const std::string& failed) {
  // The address may be "[v6]:port"; the reason follows the first ": ".
  const size_t sep = failed.find(": ");
  return sep == std::string::npos ? failed : failed.substr(0, sep);
}

// The holders index: which peers took which slice.
class HoldersIndex {
 public:
  static Result<std::unique_ptr<HoldersIndex>> Open(const std::filesystem::path& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close_v2(db);
      return Status::IOError("cannot open holders index " + path.string() + ": " + msg);
    }
    auto idx = std::unique_ptr<HoldersIndex>(new HoldersIndex(db));
    sqlite3_busy_timeout(db, 5000);
    char* err = nullptr;
    if (sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS holders(id BLOB NOT NULL, peer TEXT NOT NULL,"
                     " at INTEGER NOT NULL, PRIMARY KEY(id, peer)) WITHOUT ROWID;",
                     nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "error";
      sqlite3_free(err);
      return Status::IOError("holders index " + path.string() + ": " + msg);
    }
    return idx;
  }
  ~HoldersIndex() { sqlite3_close_v2(db_); }

  void Record(const SliceId& id, const std::set<std::string>& peers, int64_t now) {
    std::lock_guard<std::mutex> l(mu_);
    sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO holders(id, peer, at) VALUES(?1, ?2, ?3)", -1,
                       &s, nullptr);
    for (const auto& p : peers) {
      sqlite3_bind_blob(s, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
      sqlite3_bind_text(s, 2, p.data(), static_cast<int>(p.size()), SQLITE_STATIC);
      sqlite3_bind_int64(s, 3, now);
      sqlite3_step(s);
      sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      LogWarn(kComponent, "holders index not updated: " + std::string(sqlite3_errmsg(db_)));
    }
  }

  std::vector<std::string> Holders(const SliceId& id) {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::string> out;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT peer FROM holders WHERE id = ?1 ORDER BY at", -1, &s,
                           nullptr) != SQLITE_OK) {
      return out;
    }
    sqlite3_bind_blob(s, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
      out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    }
    sqlite3_finalize(s);
    return out;
  }

  void Forget(const SliceId& id) {
    std::lock_guard<std::mutex> l(mu_);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, "DELETE FROM holders WHERE id = ?1", -1, &s, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_blob(s, 1, id.Raw().data(), SliceId::kSize, SQLITE_STATIC);
      sqlite3_step(s);
    }
    sqlite3_finalize(s);
  }

 private:
  explicit HoldersIndex(sqlite3* db) : db_(db) {}
  std::mutex mu_;
  sqlite3* db_;
};

}  // namespace

class ReplicatingStore::Impl {
 public:
  Impl(ReplicatingOptions options, PeerClient* client, Clock* clock)
      : options_(std::move(options)),
        client_(client),
        clock_(clock),
        shared_(std::make_shared<Shared>(clock)),
        selector_(shared_->selector) {}

  ~Impl() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
    client_->SetRttObserver(nullptr);
  }

  Status Init() {
    if (options_.replicas < 1) return Status::InvalidArgument("replicas must be at least 1");
    if (options_.seeds.empty()) return Status::InvalidArgument("the volume has no peers configured");
    if (!options_.holders_db.empty()) {
      MESHFS_ASSIGN_OR_RETURN(holders_, HoldersIndex::Open(options_.holders_db));
    }
    // The observer may still run briefly after this store is gone (the
    // client calls a copy outside its lock): it holds only shared state.
    client_->SetRttObserver([shared = shared_](const PeerAddress& peer, double rtt_ms, bool ok) {
      const std::string key = peer.ToString();
      shared->selector.RecordRtt(key, rtt_ms, ok);
      std::lock_guard<std::mutex> l(shared->reach_mu);
      shared->reachable[key] = ok;
    });
    Status s = RefreshMembers();
    if (!s.ok()) LogWarn(kComponent, "membership not known yet, using the configured peers: " +
                                         s.ToString());
    if (options_.members_refresh_ms > 0) {
      refresher_ = std::thread([this] { RefreshLoop(); });
    }
    return Status::OK();
  }

  // ---- membership ----

  Status RefreshMembers() {
    std::vector<PeerAddress> sources = options_.seeds;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& m : members_) {
        if (m.state != MemberState::kAlive) continue;
        auto a = PeerAddress::Parse(m.addr);
        if (a.ok() && std::find(sources.begin(), sources.end(), *a) == sources.end()) {
          sources.push_back(*a);
        }
      }
    }
    Status last = Status::Unavailable("no peer to ask for members");
    for (const auto& src : sources) {
      HttpRequest r;
      r.peer = src;
      r.method = "GET";
      r.path = "/v1/members";
      r.timeout_ms = kMembersTimeoutMs;
      auto resp = client_->Call(std::move(r));
      if (!resp.ok()) {
        last = resp.status();
        continue;
      }
      if (resp->status != 200) {
        last = Status::Unavailable("peer " + src.ToString() + ": GET /v1/members returned " +
                                   std::to_string(resp->status));
        continue;
      }
      auto members = ParseMembers(resp->body);
      if (!members.ok()) {
        last = members.status().WithContext("peer " + src.ToString() + ": /v1/members");
        continue;
      }
      for (const auto& m : *members) selector_.SetPeerCoordinate(m.addr, m.coord);
      std::lock_guard<std::mutex> l(mu_);
      members_ = std::move(*members);
      have_members_ = true;
      return Status::OK();
    }
    return last;
  }

  void RefreshLoop() {
    NameThisThread("replica-refresh");
    std::unique_lock<std::mutex> l(mu_);
    while (!stopping_) {
      cv_.wait_for(l, std::chrono::milliseconds(options_.members_refresh_ms));
      if (stopping_) break;
      l.unlock();
      Status s = RefreshMembers();
      if (!s.ok()) LogDebug(kComponent, "members refresh: " + s.ToString());
      l.lock();
    }
  }

  // Live placement candidates (alive members, else the seeds).
  std::vector<PlacementCandidate> Candidates() const {
    std::vector<PlacementCandidate> out;
    std::lock_guard<std::mutex> l(mu_);
    if (have_members_) {
      for (const auto& m : members_) {
        if (m.state == MemberState::kAlive) out.push_back({m.id, m.addr, m.capacity_bytes});
      }
    }
    if (out.empty()) {
      for (const auto& s : options_.seeds) out.push_back({s.ToString(), s.ToString(), 0});
    }
    return out;
  }

  std::vector<std::string> PlacementAddrs(const SliceId& id) const {
    auto cands = Candidates();
    std::vector<std::string> out;
    for (size_t i : PlacementOrder(id, cands)) out.push_back(cands[i].addr);
    return out;
  }

  // ---- Put ----

  Status PutCounted(const SliceId& id, std::string_view blob, int* copies) {
    *copies = 0;
    // Not hashed here: the peers check every PUT body against its address
    // before storing or forwarding it (a mismatch is HTTP 400, Corruption),
    // so a damaged blob is refused by the first peer it reaches.
    const std::vector<std::string> order = PlacementAddrs(id);
    const size_t want = static_cast<size_t>(options_.replicas);
    std::set<std::string> stored, tried;
    std::vector<std::string> failures;
    bool full = false;
    auto note_failure = [&](const std::string& peer, const Status& s) {
      tried.insert(peer);
      failures.push_back(s.message());
      if (s.Is(Code::kNoSpace)) full = true;
    };

    // 1. Pipeline to the first R.
    std::vector<PeerAddress> targets;
    for (const auto& a : order) {
      if (targets.size() == want) break;
      auto p = PeerAddress::Parse(a);
      if (p.ok()) targets.push_back(*p);
    }
    if (targets.empty()) return Status::Unavailable("no live peer to store slice " + Short(id));
    {
      std::vector<PeerAddress> forward(targets.begin() + 1, targets.end());
      auto r = client_->PutSlice(targets[0], id, blob, options_.owner, forward);
      if (r.ok()) {
        for (const auto& s : r->stored_on) stored.insert(s);
        for (const auto& f : r->failed) {
          tried.insert(FailedPeer(f));
          failures.push_back(f);
          if (f.find("507") != std::string::npos || f.find("full") != std::string::npos) {
            full = true;
          }
        }
        tried.insert(targets[0].ToString());
      } else {
        if (r.status().Is(Code::kCorruption) || r.status().Is(Code::kInvalidArgument)) {
          return r.status();
        }
        note_failure(targets[0].ToString(), r.status());
      }
    }
    // 2. Fill the missing copies down the rendezvous order, one peer at a time.
    for (const auto& a : order) {
      if (stored.size() >= want) break;
      if (stored.count(a) || tried.count(a)) continue;
      auto p = PeerAddress::Parse(a);
      if (!p.ok()) continue;
      auto r = client_->PutSlice(*p, id, blob, options_.owner);
      if (r.ok()) {
        stored.insert(a);
        tried.insert(a);
      } else {
        // A peer found that the blob does not match its address: no other
        // peer will take it.
        if (r.status().Is(Code::kCorruption)) return r.status();
        note_failure(a, r.status());
      }
    }
    *copies = static_cast<int>(stored.size());
    if (holders_ && !stored.empty()) holders_->Record(id, stored, clock_->NowMicros());
    if (stored.size() >= want) return Status::OK();
    std::string msg = "slice " + Short(id) + " is on " + std::to_string(stored.size()) + " of " +
                      std::to_string(want) + " peers (" + std::to_string(order.size()) +
                      " live peers known)";
    if (!failures.empty()) msg += ": " + failures.front();
    if (full && stored.empty()) return Status::NoSpace(msg);
    return Status::Unavailable(msg);
  }

  // ---- Get ----

  // Holders first (recorded, by selector), then the rest in placement order.
  std::vector<std::string> ReadOrder(const SliceId& id) const {
    std::vector<std::string> placed = PlacementAddrs(id);
    std::vector<std::string> holders = holders_ ? holders_->Holders(id) : std::vector<std::string>{};
    std::vector<std::string> first;
    std::set<std::string> seen;
    if (holders.empty()) {
      // Without an index the first R of the placement are the likely holders.
      const size_t r = std::min(placed.size(), static_cast<size_t>(options_.replicas));
      holders.assign(placed.begin(), placed.begin() + static_cast<long>(r));
    }
    for (const auto& h : selector_.Order(holders)) {
      if (seen.insert(h).second) first.push_back(h);
    }
    for (const auto& p : placed) {
      if (seen.insert(p).second) first.push_back(p);
    }
    return first;
  }

  Result<std::string> Get(const SliceId& id) {
    const std::vector<std::string> order = ReadOrder(id);
    if (order.empty()) return Status::Unavailable("no peers known");
    struct Attempt {
      std::string peer;
      std::future<Result<HttpResponse>> f;
      Steady::time_point start;
    };
    std::vector<Attempt> inflight;
    size_t next = 0;
    int not_found = 0, corrupt = 0, unreachable = 0;
    std::string last_error;
    Steady::time_point hedge_at;

    auto launch = [&]() -> bool {
      while (next < order.size()) {
        const std::string peer = order[next++];
        auto addr = PeerAddress::Parse(peer);
        if (!addr.ok()) continue;
        HttpRequest r;
        r.peer = *addr;
        r.method = "GET";
        r.path = "/v1/slices/" + id.ToHex();
        r.timeout_ms = options_.get_timeout_ms;
        inflight.push_back({peer, client_->Send(std::move(r)), Steady::now()});
        const double expected = selector_.ExpectedRttMs(peer);
        const int delay = options_.hedge_delay_ms > 0
                              ? options_.hedge_delay_ms
                              : std::max(kMinHedgeMs, static_cast<int>(2 * expected));
        hedge_at = Steady::now() + std::chrono::milliseconds(delay);
        return true;
      }
      return false;
    };

    launch();
    while (!inflight.empty()) {
      bool progressed = false;
      for (size_t i = 0; i < inflight.size();) {
        Attempt& a = inflight[i];
        if (a.f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
          ++i;
          continue;
        }
        progressed = true;
        Result<HttpResponse> r = a.f.get();
        const double ms =
            std::chrono::duration<double, std::milli>(Steady::now() - a.start).count();
        const std::string peer = a.peer;
        inflight.erase(inflight.begin() + static_cast<long>(i));
        if (!r.ok()) {
          unreachable++;
          last_error = r.status().ToString();
        } else if (r->status == 200) {
          if (id.Matches(r->body)) {
            selector_.RecordTransfer(peer, r->body.size(), ms);
            return std::move(r->body);
          }
          corrupt++;
          selector_.RecordCorrupt(peer);
          last_error = "peer " + peer + " served slice " + Short(id) +
                       " with bytes that fail verification";
          LogWarn(kComponent, last_error + "; trying the next replica");
        } else if (r->status == 404) {
          not_found++;
        } else {
          unreachable++;
          selector_.RecordFailure(peer);
          last_error = "peer " + peer + ": GET slice returned HTTP " + std::to_string(r->status);
        }
        launch();  // a finished attempt that did not deliver: ask the next one now
      }
      if (inflight.empty()) break;
      if (!progressed && Steady::now() >= hedge_at && next < order.size()) {
        launch();  // the first is late: hedge
        continue;
      }
      // Wait a little on the oldest attempt (until the hedge point at most).
      auto until = std::min(hedge_at, Steady::now() + std::chrono::milliseconds(20));
      if (next >= order.size()) until = Steady::now() + std::chrono::milliseconds(20);
      inflight.front().f.wait_until(until);
    }
    if (unreachable == 0 && corrupt > 0) {
      return Status::Corruption("no good copy of slice " + Short(id) + ": " + last_error);
    }
    if (unreachable == 0) {
      return Status::NotFound("slice " + Short(id) + " is on none of " +
                              std::to_string(order.size()) + " peers");
    }
    return Status::Unavailable("slice " + Short(id) + " could not be read from any of " +
                               std::to_string(order.size()) + " peers (" +
                               std::to_string(unreachable) + " unreachable): " + last_error);
  }

  // ---- Contains / CopiesOf ----

  Result<bool> Contains(const SliceId& id) {
    Status last = Status::Unavailable("no peer answered");
    bool answered = false;
    for (const auto& peer : ReadOrder(id)) {
      auto addr = PeerAddress::Parse(peer);
      if (!addr.ok()) continue;
      auto r = client_->HasSlices(*addr, {id});
      if (r.ok() && r->size() == 1) {
        if ((*r)[0]) return true;
        answered = true;
      } else if (!r.ok()) {
        last = r.status();
      }
    }
    if (answered) return false;
    return last;
  }

  Result<int> CopiesOf(const SliceId& id) {
    int copies = 0;
    bool answered = false;
    Status last = Status::Unavailable("no peer answered");
    for (const auto& peer : ReadOrder(id)) {
      auto addr = PeerAddress::Parse(peer);
      if (!addr.ok()) continue;
      auto r = client_->HasSlices(*addr, {id});
      if (r.ok() && r->size() == 1) {
        answered = true;
        copies += (*r)[0] ? 1 : 0;
      } else if (!r.ok()) {
        last = r.status();
      }
    }
    if (!answered) return last;
    return copies;
  }

  // ---- Remove ----

  Status Remove(const SliceId& id) {
    if (options_.signing_key.empty()) {
      if (holders_) holders_->Forget(id);
      return Status::OK();
    }
    const int64_t now_s = clock_->NowMicros() / 1'000'000;
    Status last;
    for (const auto& peer : ReadOrder(id)) {
      auto addr = PeerAddress::Parse(peer);
      if (!addr.ok()) continue;
      MESHFS_ASSIGN_OR_RETURN(SignedRequest req,
                              SignedRequest::Sign("DELETE", id.ToHex(), options_.signing_key, now_s));
      HttpRequest r;
      r.peer = *addr;
      r.method = "DELETE";
      r.path = "/v1/slices/" + id.ToHex();
      r.headers = req.Headers();
      r.timeout_ms = options_.get_timeout_ms;
      auto resp = client_->Call(std::move(r));
      if (!resp.ok()) {
        last = resp.status();
      } else if (resp->status >= 300 && resp->status != 404) {
        last = Status::Unavailable("peer " + peer + ": DELETE slice " + Short(id) +
                                   " returned HTTP " + std::to_string(resp->status));
      }
    }
    if (holders_) holders_->Forget(id);
    return last;
  }

  // ---- status ----

  std::vector<PeerStatus> Peers() const {
    std::vector<PeerStatus> out;
    std::set<std::string> seen;
    std::vector<Member> members;
    {
      std::lock_guard<std::mutex> l(mu_);
      members = members_;
    }
    auto fill = [&](PeerStatus& ps) {
      PeerScore sc = selector_.Score(ps.addr);
      ps.rtt_ms = sc.rtt_ms;
      ps.predicted_rtt_ms = sc.predicted_rtt_ms;
      ps.reputation = sc.reputation;
      ps.failures = sc.failures;
      ps.corrupt = sc.corrupt;
      std::lock_guard<std::mutex> l(shared_->reach_mu);
      auto it = shared_->reachable.find(ps.addr);
      ps.reachable = it != shared_->reachable.end() && it->second;
    };
    for (const auto& m : members) {
      PeerStatus ps;
      ps.id = m.id;
      ps.addr = m.addr;
      ps.state = std::string(StateName(m.state));
      ps.capacity_bytes = m.capacity_bytes;
      ps.free_bytes = m.free_bytes;
      fill(ps);
      seen.insert(ps.addr);
      out.push_back(std::move(ps));
    }
    for (const auto& s : options_.seeds) {
      if (seen.count(s.ToString())) continue;
      PeerStatus ps;
      ps.addr = s.ToString();
      ps.state = "configured";
      fill(ps);
      out.push_back(std::move(ps));
    }
    return out;
  }

  std::vector<std::string> RecordedHolders(const SliceId& id) {
    return holders_ ? holders_->Holders(id) : std::vector<std::string>{};
  }

  const ReplicatingOptions options_;
  PeerClient* const client_;
  Clock* const clock_;
  struct Shared {
    explicit Shared(Clock* clock) : selector(ReplicaSelector::Options{}, clock) {}
    ReplicaSelector selector;
    std::mutex reach_mu;
    std::map<std::string, bool> reachable;  // guarded by reach_mu
  };
  std::shared_ptr<Shared> shared_;
  ReplicaSelector& selector_;
  std::unique_ptr<HoldersIndex> holders_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool have_members_ = false;
  std::vector<Member> members_;
  std::thread refresher_;
};

ReplicatingStore::ReplicatingStore() = default;
ReplicatingStore::~ReplicatingStore() = default;

Result<std::unique_ptr<ReplicatingStore>> ReplicatingStore::Open(ReplicatingOptions options,
                                                                 PeerClient* client,
                                                                 Clock* clock) {
  if (client == nullptr) return Status::InvalidArgument("replicating store needs a peer client");
  std::unique_ptr<ReplicatingStore> store(new ReplicatingStore());
  store->impl_ = std::make_unique<Impl>(std::move(options), client, clock);
  MESHFS_RETURN_IF_ERROR(store->impl_->Init());
  return store;
}

Status ReplicatingStore::Put(const SliceId& id, std::string_view blob) {
  int copies = 0;
  return impl_->PutCounted(id, blob, &copies);
}
Status ReplicatingStore::PutCounted(const SliceId& id, std::string_view blob, int* copies) {
  return impl_->PutCounted(id, blob, copies);
}
int ReplicatingStore::Replicas() const { return impl_->options_.replicas; }
Result<std::string> ReplicatingStore::Get(const SliceId& id) { return impl_->Get(id); }
Result<bool> ReplicatingStore::Contains(const SliceId& id) { return impl_->Contains(id); }
Status ReplicatingStore::Remove(const SliceId& id) { return impl_->Remove(id); }
Result<int> ReplicatingStore::CopiesOf(const SliceId& id) { return impl_->CopiesOf(id); }
std::vector<std::string> ReplicatingStore::RecordedHolders(const SliceId& id) {
  return impl_->RecordedHolders(id);
}
Status ReplicatingStore::RefreshMembers() { return impl_->RefreshMembers(); }
std::vector<PeerStatus> ReplicatingStore::Peers() const { return impl_->Peers(); }
ReplicaSelector& ReplicatingStore::selector() { return impl_->selector_; }

}  // namespace meshfs::net
