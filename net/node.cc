// The storage peer: routes of the peer protocol (docs/protocol.md).
#include "meshfs/net/node.h"

#include <unistd.h>

#include <atomic>
#include <future>
#include <nlohmann/json.hpp>

#include "http_server.h"
#include "meshfs/core/hex.h"
#include "meshfs/core/log.h"
#include "meshfs/core/root_record.h"
#include "meshfs/core/signed_request.h"
#include "meshfs/net/metrics.h"

namespace meshfs::net {
namespace {

constexpr std::string_view kSlicesPrefix = "/v1/slices/";
constexpr std::string_view kRootsPrefix = "/v1/roots/";
constexpr size_t kMaxHasEntries = 100'000;

bool IsVolumeHex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Short printable form of untrusted text for log lines.
std::string Printable(std::string_view s, size_t max = 80) {
  std::string out(s.substr(0, max));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  if (s.size() > max) out += "...";
  return out;
}

// The route name used in metrics.
std::string RouteType(const ServerRequest& r) {
  const std::string& p = r.path;
  if (p == "/v1/slices/has") return "slice_has";
  if (p.starts_with(kSlicesPrefix)) {
    if (r.method == "PUT") return "slice_put";
    if (r.method == "GET") return "slice_get";
    if (r.method == "HEAD") return "slice_head";
    if (r.method == "DELETE") return "slice_delete";
    return "other";
  }
  if (p.starts_with(kRootsPrefix)) return r.method == "PUT" ? "root_put" : "root_get";
  if (p == "/v1/gossip") return "gossip";
  if (p == "/v1/members") return "members";
  if (p == "/v1/ping") return "ping";
  if (p == "/v1/info") return "info";
  if (p == "/metrics") return "metrics";
  return "other";
}

int HttpStatusFor(const Status& st) {
  switch (st.code()) {
    case Code::kOk:
      return 200;
    case Code::kNotFound:
      return 404;
    case Code::kCorruption:
    case Code::kInvalidArgument:
      return 400;
    case Code::kPermissionDenied:
      return 403;
    case Code::kAlreadyExists:
      return 409;
    case Code::kTooLarge:
      return 413;
    case Code::kNoSpace:
      return 507;
    case Code::kUnavailable:
    case Code::kAborted:
      return 503;
    default:
      return 500;
  }
}

ServerResponse Error(const Status& st) {
  return ServerResponse::Text(HttpStatusFor(st), st.message());
}

}  // namespace

class Node::Impl {
 public:
  explicit Impl(NodeOptions options)
      : options_(std::move(options)),
        clock_(options_.clock != nullptr ? options_.clock : Clock::Real()) {}

  Status Start(std::string* addr_out) {
    DiskStore::Options so;
    so.dir = options_.data_dir;
    so.capacity_bytes = options_.capacity_bytes;
    so.max_blob_bytes = options_.max_blob_bytes;
    MESHFS_ASSIGN_OR_RETURN(store_, DiskStore::Open(so));

    HttpServer::Options ho;
    ho.listen = options_.listen;
    ho.max_body_bytes = options_.max_blob_bytes;
    ho.max_buffered_bytes = options_.max_buffered_bytes;
    MESHFS_ASSIGN_OR_RETURN(
        server_, HttpServer::Start(
                     ho, [this](ServerRequest& r) { return Handle(r); },
                     [this](const ServerRequest& r, int status, uint64_t out, double secs) {
                       metrics_.ObserveRequest(RouteType(r), status, r.body_bytes, out, secs);
                     }));
    PeerAddress self = options_.advertise.host.empty() ? options_.listen : options_.advertise;
    if (options_.advertise.host.empty() || self.port == 0) self.port = server_->port();
    if (self.host == "0.0.0.0" || self.host == "::") {
      LogWarn("node", "advertising " + self.ToString() +
                          ", which other peers cannot reach; pass --advertise HOST:PORT");
    }
    addr_ = self.ToString();
    *addr_out = addr_;

    const DiskStore::Stats s = store_->stats();
    SelfInfo info;
    info.id = store_->node_id();
    info.addr = addr_;
    info.capacity_bytes = s.capacity_bytes;
    info.free_bytes = s.capacity_bytes > s.used_bytes ? s.capacity_bytes - s.used_bytes : 0;
    gossip_ = std::make_unique<GossipAgent>(info, options_.gossip, &client_, clock_);
    gossip_->Start(options_.join);
    ready_.store(true, std::memory_order_release);
    running_ = true;
    return Status::OK();
  }

  void Shutdown(int drain_ms) {
    if (!running_) return;
    running_ = false;
    server_->StopAccepting();
    if (!server_->Drain(drain_ms)) {
      LogWarn("node", "requests still in flight after " + std::to_string(drain_ms) +
                          " ms; closing their connections");
    }
    gossip_->Stop();
    server_->Stop();
  }

  const std::string& id() const { return store_->node_id(); }
  uint16_t port() const { return server_->port(); }

 private:
  ServerResponse Handle(ServerRequest& r) {
    const std::string& p = r.path;
    if (!ready_.load(std::memory_order_acquire)) {
      return ServerResponse::Text(503, "node is starting; retry");
    }
    if (r.server_busy) {
      LogWarn("node", "too many uploads in flight; refusing " + r.method + " " + Printable(p));
      return ServerResponse::Text(503, "too many uploads in flight; retry later");
    }
    if (r.body_too_large) {
      return ServerResponse::Text(
          413, "request body over the " + std::to_string(options_.max_blob_bytes) + "-byte limit");
    }
    if (p == "/v1/slices/has") {
      if (r.method != "POST") return MethodNotAllowed("POST");
      return Has(r);
    }
    if (p.starts_with(kSlicesPrefix)) {
      const std::string_view rest = std::string_view(p).substr(kSlicesPrefix.size());
      auto id = SliceId::FromHex(rest);
      if (!id.ok()) {
        LogInfo("node",
                "rejected " + r.method + " with malformed slice address '" + Printable(rest) + "'");
        return ServerResponse::Text(400, "malformed slice address: expected 64 lowercase hex");
      }
      if (r.method == "PUT") return PutSlice(r, *id);
      if (r.method == "GET" || r.method == "HEAD") return GetSlice(*id);
      if (r.method == "DELETE") return DeleteSlice(r, *id);
      return MethodNotAllowed("GET, HEAD, PUT, DELETE");
    }
    if (p.starts_with(kRootsPrefix)) {
      const std::string_view volume = std::string_view(p).substr(kRootsPrefix.size());
      if (!IsVolumeHex(volume)) {
        return ServerResponse::Text(400, "malformed volume id: expected 64 lowercase hex");
      }
      if (r.method == "PUT") return PutRoot(r, volume);
      if (r.method == "GET") return GetRoots(r, volume);
      return MethodNotAllowed("GET, PUT");
    }
    if (p == "/v1/gossip") {
      if (r.method != "POST") return MethodNotAllowed("POST");
      auto reply = gossip_->HandleGossip(r.body);
      if (!reply.ok()) {
        LogInfo("node", "rejected gossip message: " + reply.status().message());
        return Error(reply.status());
      }
      return ServerResponse::Json(200, std::move(*reply));
    }
    if (r.method != "GET" && r.method != "HEAD") return MethodNotAllowed("GET");
    if (p == "/v1/ping") {
      nlohmann::json j = {{"id", id()}, {"coord", gossip_->CoordinateJson()}};
      return ServerResponse::Json(200, j.dump());
    }
    if (p == "/v1/info") {
      const DiskStore::Stats s = store_->stats();
      nlohmann::json j = {{"id", id()},
                          {"version", options_.version},
                          {"addr", addr_},
                          {"capacity_bytes", s.capacity_bytes},
                          {"used_bytes", s.used_bytes},
                          {"slices", s.slices},
                          {"coord", gossip_->CoordinateJson()}};
      return ServerResponse::Json(200, j.dump());
    }
    if (p == "/v1/members") return ServerResponse::Json(200, gossip_->MembersJson());
    if (p == "/metrics") {
      const DiskStore::Stats s = store_->stats();
      Metrics::Gauges g;
      g.slices = s.slices;
      g.used_bytes = s.used_bytes;
      g.capacity_bytes = s.capacity_bytes;
      g.members = gossip_->MemberCounts();
      ServerResponse resp = ServerResponse::Text(200, metrics_.Render(g));
      resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return resp;
    }
    return ServerResponse::Text(404, "no such endpoint: " + Printable(p));
  }

  static ServerResponse MethodNotAllowed(const std::string& allowed) {
    ServerResponse r = ServerResponse::Text(405, "method not allowed; use " + allowed);
    r.headers["Allow"] = allowed;
    return r;
  }

  void UpdateCapacity() {
    const DiskStore::Stats s = store_->stats();
    gossip_->UpdateCapacity(s.capacity_bytes,
                            s.capacity_bytes > s.used_bytes ? s.capacity_bytes - s.used_bytes : 0);
  }

  struct Forwarded {
    std::vector<std::string> stored_on;
    std::vector<std::string> failed;
  };

  // Hands the blob to the first live peer of `forward` with the rest of the
  // list; a peer that fails is reported and skipped.
  Forwarded Forward(const SliceId& id, std::string_view blob, const std::string& owner,
                    const std::vector<PeerAddress>& forward) {
    Forwarded out;
    for (size_t i = 0; i < forward.size(); ++i) {
      const std::vector<PeerAddress> rest(forward.begin() + static_cast<long>(i) + 1,
                                          forward.end());
      auto reply = client_.PutSlice(forward[i], id, blob, owner, rest);
      metrics_.ObserveForward(reply.ok());
      if (!reply.ok()) {
        LogWarn("node", "forwarding slice " + id.ToHex().substr(0, 16) +
                            "... failed: " + reply.status().message());
        out.failed.push_back(forward[i].ToString() + ": " + reply.status().message());
        continue;
      }
      out.stored_on = std::move(reply->stored_on);
      for (auto& f : reply->failed) out.failed.push_back(std::move(f));
      break;
    }
    return out;
  }

  ServerResponse PutSlice(const ServerRequest& r, const SliceId& id) {
    std::string owner;
    if (auto it = r.headers.find("x-meshfs-owner"); it != r.headers.end()) {
      owner = it->second;
      if (!IsVolumeHex(owner)) {
        return ServerResponse::Text(400, "X-Meshfs-Owner must be a volume id (64 lowercase hex)");
      }
    }
    std::vector<PeerAddress> forward;
    if (auto it = r.headers.find("x-meshfs-forward"); it != r.headers.end()) {
      auto list = PeerAddress::ParseList(it->second);
      if (!list.ok()) {
        return ServerResponse::Text(400, "bad X-Meshfs-Forward: " + list.status().message());
      }
      if (list->size() > options_.max_forward) {
        return ServerResponse::Text(400, "X-Meshfs-Forward lists more than " +
                                             std::to_string(options_.max_forward) + " peers");
      }
      forward = std::move(*list);
    }
    // The body is hashed once, here (the store is told it was checked):
    // only a blob that matches its address is stored or passed on.
    if (!id.Matches(r.body)) {
      return Reject("PUT of slice", id.ToHex(),
                    Status::Corruption("body does not match the address (BLAKE2b-256 differs)"));
    }
    // Pipeline replication runs while this peer writes its own copy, so
    // each hop adds one transfer, not a transfer plus a disk sync.
    std::future<Forwarded> downstream;
    if (!forward.empty()) {
      downstream = std::async(std::launch::async, [this, &r, &id, &owner, &forward] {
        return Forward(id, r.body, owner, forward);
      });
    }
    auto stored = store_->Put(id, r.body, owner, /*address_verified=*/true);
    Forwarded fwd;
    if (downstream.valid()) fwd = downstream.get();
    if (!stored.ok()) {
      const int code = HttpStatusFor(stored.status());
      const std::string msg = "rejected PUT of slice " + id.ToHex().substr(0, 16) + "... (" +
                              std::to_string(r.body.size()) +
                              " bytes): " + stored.status().message();
      if (code >= 500 && code != 507) {
        LogError("node", msg);
      } else {
        LogInfo("node", msg);
      }
      return Error(stored.status());
    }
    if (*stored) UpdateCapacity();
    LogDebug("node", "stored slice " + id.ToHex() + (*stored ? "" : " (already here)"));

    nlohmann::json stored_on = nlohmann::json::array({addr_});
    for (auto& s : fwd.stored_on) stored_on.push_back(std::move(s));
    nlohmann::json failed = nlohmann::json::array();
    for (auto& f : fwd.failed) failed.push_back(std::move(f));
    nlohmann::json j = {{"stored_on", stored_on}, {"failed", failed}};
    return ServerResponse::Json(*stored ? 201 : 200, j.dump());
  }

  ServerResponse GetSlice(const SliceId& id) {
    auto f = store_->OpenBlob(id);
    if (!f.ok()) {
      if (!f.status().Is(Code::kNotFound)) LogError("node", f.status().message());
      return Error(f.status());
    }
    ServerResponse resp;
    resp.status = 200;
    resp.content_type = "application/octet-stream";
    resp.fd = f->fd;
    resp.fd_size = f->size;
    // A served slice leaves the page cache, as a stored one does: the
    // client caches what it reads, and the next GET reuses the memory.
    resp.drop_pages_after = true;
    return resp;
  }

  ServerResponse DeleteSlice(const ServerRequest& r, const SliceId& id) {
    const std::string hex = id.ToHex();
    auto req = SignedRequest::FromHeaders("DELETE", hex, r.headers);
    if (!req.ok()) return Reject("DELETE", hex, req.status());
    const int64_t now = clock_->NowMicros() / 1'000'000;
    if (Status st = req->Verify(now); !st.ok()) return Reject("DELETE", hex, st);
    if (Status st = store_->UseNonce(req->owner, req->nonce, req->timestamp, now,
                                     2 * SignedRequest::kMaxSkewSeconds);
        !st.ok()) {
      return Reject("DELETE", hex, st);
    }
    auto removed = store_->RemoveRef(id, req->owner);
    if (!removed.ok()) {
      if (!removed.status().Is(Code::kNotFound)) LogError("node", removed.status().message());
      return Error(removed.status());
    }
    if (*removed) UpdateCapacity();
    LogDebug("node", "volume " + req->owner.substr(0, 16) + "... dropped its reference to " + hex +
                         (*removed ? " (blob removed)" : ""));
    nlohmann::json j = {{"removed", *removed}};
    return ServerResponse::Json(200, j.dump());
  }

  ServerResponse Reject(std::string_view what, std::string_view target, const Status& st) {
    LogInfo("node", "rejected " + std::string(what) + " " + std::string(target.substr(0, 16)) +
                        "...: " + st.message());
    return Error(st);
  }

  ServerResponse PutRoot(const ServerRequest& r, std::string_view volume) {
    auto rec = RootRecord::ParseVerified(r.body, volume);
    if (!rec.ok()) return Reject("root record for", volume, rec.status());
    if (Status st = store_->PutRoot(volume, rec->sequence, r.body); !st.ok()) {
      if (st.code() != Code::kAlreadyExists && st.code() != Code::kInvalidArgument) {
        LogError("node", st.message());
        return Error(st);
      }
      return Reject("root record for", volume, st);
    }
    LogInfo("node", "root record " + std::to_string(rec->sequence) + " of volume " +
                        std::string(volume.substr(0, 16)) + "... stored");
    nlohmann::json j = {{"volume", std::string(volume)}, {"sequence", rec->sequence}};
    return ServerResponse::Json(200, j.dump());
  }

  ServerResponse GetRoots(const ServerRequest& r, std::string_view volume) {
    auto roots = store_->Roots(volume);
    if (!roots.ok()) {
      LogError("node", roots.status().message());
      return Error(roots.status());
    }
    auto all = r.query.find("all");
    if (all != r.query.end() && all->second != "0") {
      nlohmann::json list = nlohmann::json::array();
      for (const auto& enc : *roots) {
        auto rec = RootRecord::Parse(enc);
        if (!rec.ok()) continue;
        list.push_back({{"sequence", rec->sequence},
                        {"root", rec->root.ToHex()},
                        {"time_micros", rec->time_micros},
                        {"record", HexEncode(enc)}});
      }
      nlohmann::json j = {{"volume", std::string(volume)}, {"records", list}};
      return ServerResponse::Json(200, j.dump());
    }
    if (roots->empty()) return ServerResponse::Text(404, "no root record for this volume");
    ServerResponse resp;
    resp.status = 200;
    resp.content_type = "application/octet-stream";
    resp.body = std::move(roots->front());
    return resp;
  }

  ServerResponse Has(const ServerRequest& r) {
    auto j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_array()) {
      return ServerResponse::Text(400, "body must be a JSON list of slice addresses");
    }
    if (j.size() > kMaxHasEntries) {
      return ServerResponse::Text(
          413, "at most " + std::to_string(kMaxHasEntries) + " addresses per request");
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : j) {
      if (!e.is_string()) return ServerResponse::Text(400, "list entries must be strings");
      auto id = SliceId::FromHex(e.get_ref<const std::string&>());
      if (!id.ok()) return ServerResponse::Text(400, "malformed slice address in list");
      out.push_back(store_->Contains(*id));
    }
    return ServerResponse::Json(200, out.dump());
  }

  NodeOptions options_;
  Clock* const clock_;
  std::unique_ptr<DiskStore> store_;
  PeerClient client_;
  Metrics metrics_;
  std::unique_ptr<GossipAgent> gossip_;
  std::unique_ptr<HttpServer> server_;  // last: stopped first
  std::string addr_;
  std::atomic<bool> ready_{false};
  bool running_ = false;
};

Result<std::unique_ptr<Node>> Node::Start(NodeOptions options) {
  std::unique_ptr<Node> node(new Node());
  node->impl_ = std::make_unique<Impl>(std::move(options));
  MESHFS_RETURN_IF_ERROR(node->impl_->Start(&node->addr_));
  return node;
}

Node::~Node() {
  if (impl_) impl_->Shutdown(0);
}

const std::string& Node::id() const { return impl_->id(); }
uint16_t Node::port() const { return impl_->port(); }
void Node::Shutdown(int drain_ms) { impl_->Shutdown(drain_ms); }

}  // namespace meshfs::net
